//! The GitHub forge (octocrab): one pull request per step, the `fleetwave/gate` commit
//! status, one managed comment per PR, approvals from reviews, merges with the verified head.
//!
//! All calls go through [`GitHubForge::call`], which counts them, sends conditional requests
//! for GETs (ETags persist in the cache directory, so an idle `reconcile --once` costs one
//! 304 per open PR), honours `Retry-After` and rate-limit headers with a bounded backoff, and
//! serialises content-creating calls (GitHub's secondary limits punish bursts).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use super::{Forge, ForgeError, PrSpec, StepRef};
use crate::adapters::git::GitRepo;
use crate::core::decide::PrObs;
use crate::core::state::GateState;
use crate::core::status::ApiBudget;

pub const CONTEXT: &str = "fleetwave/gate";
/// Marks fleetwave's step comment; the plan preview has its own, so neither replaces the other.
pub const STEP_COMMENT: &str = "<!-- fleetwave:managed-comment -->";
pub const PREVIEW_COMMENT: &str = "<!-- fleetwave:plan-preview -->";
const MAX_ATTEMPTS: u32 = 6;
/// Longest wait honoured for one Retry-After or rate-limit reset.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

#[derive(Debug, Clone)]
pub enum GitHubAuth {
    Token(String),
    /// GitHub App: app id and private key (PEM); installation tokens are refreshed by octocrab.
    App {
        app_id: u64,
        key_pem: String,
    },
}

#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// REST root: `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api: String,
    pub owner: String,
    pub repo: String,
    pub auth: GitHubAuth,
    pub merge_method: MergeMethod,
    pub labels: Vec<String>,
    pub target_url: Option<String>,
    /// Users whose approving review satisfies a manual gate.
    pub approvers: Vec<String>,
    /// Teams (`org/team`) whose members' approvals count.
    pub approver_teams: Vec<String>,
    /// Where ETags and cached answers persist between runs.
    pub cache_file: Option<PathBuf>,
    /// Also post a check run with the per-cluster table (GitHub Apps only, on github.com).
    pub check_runs: bool,
}

/// Owner and repository from a GitHub remote URL (https or ssh).
pub fn owner_repo(remote: &str) -> Option<(String, String)> {
    let norm = crate::core::repo_url::normalize_repo_url(remote)?;
    let mut parts = norm.splitn(3, '/');
    let (_host, owner, repo) = (parts.next()?, parts.next()?, parts.next()?);
    // normalize_repo_url lowercases; take the original spelling from the URL.
    let tail = remote.trim_end_matches('/').trim_end_matches(".git");
    let mut segs = tail.rsplit(['/', ':']);
    let r = segs.next()?.to_string();
    let o = segs.next()?.to_string();
    (o.eq_ignore_ascii_case(owner) && r.eq_ignore_ascii_case(repo)).then_some((o, r))
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Cache {
    /// url → (etag, body)
    etags: BTreeMap<String, (String, String)>,
    /// "PR number/marker" → managed comment id
    comments: BTreeMap<String, u64>,
    /// plan → (dashboard issue number, body last written)
    dashboards: BTreeMap<String, (u64, String)>,
    /// head sha → check run id
    check_runs: BTreeMap<String, u64>,
    /// The base head at the end of the last tick.
    last_base: Option<String>,
    /// url of a list's first page → every page's items (JSON), for 304s on paginated lists.
    #[serde(default)]
    lists: BTreeMap<String, String>,
    /// GitHub refused check runs to this token (403): not asked again.
    #[serde(default)]
    check_runs_refused: bool,
    /// The core REST budget from the last answer's rate-limit headers (for `status` and the
    /// dashboard).
    #[serde(default)]
    rate: Option<ApiBudget>,
}

/// The core REST budget an answer's `x-ratelimit-*` headers state, seen at `now`. Other
/// resources (search, GraphQL) have budgets of their own and are not the one steps spend.
fn budget_of(h: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<ApiBudget> {
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let number = |k: &str| header(k).and_then(|v| v.parse::<u64>().ok());
    if header("x-ratelimit-resource").is_some_and(|r| r != "core") {
        return None;
    }
    let reset = i64::try_from(number("x-ratelimit-reset")?).ok()?;
    Some(ApiBudget {
        limit: number("x-ratelimit-limit")?,
        remaining: number("x-ratelimit-remaining")?,
        reset: chrono::DateTime::from_timestamp(reset, 0)?,
        seen_at: now,
    })
}

/// The budget the GitHub forge last saw, as kept in its cache file (None when no GitHub
/// forge with this cache has answered yet).
pub fn last_budget(cache_file: &std::path::Path) -> Option<ApiBudget> {
    let bytes = std::fs::read(cache_file).ok()?;
    serde_json::from_slice::<Cache>(&bytes).ok()?.rate
}

/// The dashboard body with the budget on its "Updated …" line, which alone never causes a
/// write (so the figure is the one seen when the body last changed).
fn with_budget(body: &str, budget: Option<&ApiBudget>) -> String {
    let Some(b) = budget else {
        return body.to_string();
    };
    let line = crate::core::status::render_budget(b, b.seen_at);
    let mut done = false;
    let mut out: Vec<String> = Vec::new();
    for l in body.split('\n') {
        if !done && l.starts_with(super::DASHBOARD_UPDATED) {
            done = true;
            out.push(format!("{l} {line}."));
        } else {
            out.push(l.to_string());
        }
    }
    out.join("\n")
}

pub struct GitHubForge<'a> {
    client: octocrab::Octocrab,
    cfg: GitHubConfig,
    git: Option<&'a GitRepo>,
    author_email: String,
    calls: AtomicUsize,
    cache: Mutex<Cache>,
    writes: tokio::sync::Mutex<()>,
    violations: Mutex<Vec<String>>,
    /// Keys of warnings already given (each is said once per process).
    warned: Mutex<std::collections::BTreeSet<String>>,
    /// Check runs were refused (a token that is not an App's): commit statuses only.
    check_runs_refused: std::sync::atomic::AtomicBool,
}

struct Answer {
    status: StatusCode,
    body: Value,
    /// False when GitHub answered 304 and the body is the cached one.
    fresh: bool,
    /// `Link: <…>; rel="next"`: the next page of a list.
    next: Option<String>,
}

/// A whole HTTP answer, read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

/// How long to wait before retrying this answer, if it may be retried. Rate limits mean "not
/// processed": safe to retry any call. A 5xx may hide a completed create, so creates are
/// looked up again by their callers instead.
fn retry_after(
    method: &Method,
    path: &str,
    reply: &Reply,
    retry_server_errors: bool,
) -> Option<Duration> {
    let status = reply.status;
    let rate_limited = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN
    );
    let wait = retry_wait(status, &reply.headers, &reply.json)
        .filter(|_| retry_server_errors || rate_limited)?;
    if rate_limited {
        tracing::info!(
            wait_secs = wait.as_secs_f64(),
            "GitHub rate limit on {method} {path} ({status}): waiting {wait:?}"
        );
    } else {
        tracing::warn!("GitHub {method} {path}: {status}; waiting {wait:?} before retrying");
    }
    Some(wait)
}

const API_VERSION: &str = "2022-11-28";

/// Installation tokens already bought in this process: (API root, app, repo) → (token, expiry).
type TokenCache = BTreeMap<(String, u64, String), (String, chrono::DateTime<chrono::Utc>)>;
static APP_TOKENS: std::sync::LazyLock<Mutex<TokenCache>> =
    std::sync::LazyLock::new(Default::default);

/// A GitHub App's installation token for the configured repository: a JWT signed with the
/// App's key (RS256, `iss` = app id, at most 10 minutes) buys it from
/// `POST /app/installations/{id}/access_tokens`. Done here rather than by octocrab, which sends
/// the installation token only to api.github.com and so never to GitHub Enterprise Server.
/// Kept in memory (never on disk) until 5 minutes before it expires.
async fn installation_token(
    cfg: &GitHubConfig,
    app_id: u64,
    key_pem: &str,
) -> Result<String, ForgeError> {
    let repo = format!("{}/{}", cfg.owner, cfg.repo);
    let cache_key = (cfg.api.clone(), app_id, repo.clone());
    let now = chrono::Utc::now();
    if let Some((t, exp)) = APP_TOKENS.lock().expect("token cache").get(&cache_key) {
        if *exp > now + chrono::Duration::minutes(5) {
            return Ok(t.clone());
        }
    }
    let err = |what: &str, e: &dyn std::fmt::Display| {
        ForgeError::Api(format!("GitHub App {app_id} for {repo}: {what}: {e}"))
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes())
        .map_err(|e| err("private key", &e))?;
    let claims = json!({
        "iat": now.timestamp() - 60,
        "exp": now.timestamp() + 540,
        "iss": app_id.to_string(),
    });
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| err("sign the JWT", &e))?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("fleetwave/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| err("HTTP client", &e))?;
    let root = cfg.api.trim_end_matches('/');
    let send = |req: reqwest::RequestBuilder| async {
        let res = req
            .bearer_auth(&jwt)
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .send()
            .await
            .map_err(|e| err("request", &e))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        Ok::<_, ForgeError>((status, body))
    };
    let (st, inst) = send(http.get(format!("{root}/repos/{repo}/installation"))).await?;
    let id = inst["id"]
        .as_u64()
        .filter(|_| st.is_success())
        .ok_or_else(|| api_err(&format!("App {app_id} installation on {repo}"), st, &inst))?;
    let url = format!("{root}/app/installations/{id}/access_tokens");
    let (st, tok) = send(http.post(url).json(&json!({}))).await?;
    let token = tok["token"]
        .as_str()
        .filter(|_| st.is_success())
        .ok_or_else(|| api_err(&format!("App {app_id} installation token"), st, &tok))?;
    let expires = tok["expires_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(now + chrono::Duration::minutes(55), |t| {
            t.with_timezone(&chrono::Utc)
        });
    APP_TOKENS
        .lock()
        .expect("token cache")
        .insert(cache_key, (token.to_string(), expires));
    Ok(token.to_string())
}

/// The `rel="next"` target of a `Link` header (GitHub's pagination).
fn link_next(h: &HeaderMap) -> Option<String> {
    let link = h.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn api_err(what: &str, status: StatusCode, body: &Value) -> ForgeError {
    let msg = body.get("message").and_then(Value::as_str).unwrap_or("");
    ForgeError::Api(
        format!("GitHub {what}: {status} {msg}")
            .trim_end()
            .to_string(),
    )
}

impl<'a> GitHubForge<'a> {
    pub async fn new(
        cfg: GitHubConfig,
        git: Option<&'a GitRepo>,
        author_email: &str,
    ) -> Result<GitHubForge<'a>, ForgeError> {
        let builder = octocrab::Octocrab::builder()
            .base_uri(cfg.api.as_str())
            .map_err(|e| ForgeError::Api(format!("bad GitHub API URL {}: {e}", cfg.api)))?
            // GitHub's REST docs ask for both on every call, writes included.
            .add_header(http::header::ACCEPT, "application/vnd.github+json".into())
            .add_header(
                HeaderName::from_static("x-github-api-version"),
                API_VERSION.into(),
            )
            // fleetwave retries itself, honouring GitHub's headers, and counts every call.
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None);
        let token = match &cfg.auth {
            GitHubAuth::Token(t) => t.clone(),
            GitHubAuth::App { app_id, key_pem } => {
                installation_token(&cfg, *app_id, key_pem).await?
            }
        };
        let client = builder
            .personal_token(token)
            .build()
            .map_err(|e| ForgeError::Api(format!("GitHub client: {e}")))?;
        let cache: Cache = cfg
            .cache_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let refused = cache.check_runs_refused;
        Ok(GitHubForge {
            client,
            cfg,
            git,
            author_email: author_email.to_string(),
            calls: AtomicUsize::new(0),
            cache: Mutex::new(cache),
            writes: tokio::sync::Mutex::new(()),
            violations: Mutex::new(Vec::new()),
            warned: Mutex::new(Default::default()),
            check_runs_refused: std::sync::atomic::AtomicBool::new(refused),
        })
    }

    fn git(&self) -> Result<&GitRepo, ForgeError> {
        self.git.ok_or_else(|| {
            ForgeError::Api(
                "this GitHub client has no fleet repository to read branches from".into(),
            )
        })
    }

    /// Say `message` on stderr once per process for `key`.
    fn warn_once(&self, key: &str, message: &str) {
        if self
            .warned
            .lock()
            .expect("warn lock")
            .insert(key.to_string())
        {
            // Said to the operator whatever RUST_LOG filters.
            eprintln!("warning: {message}");
        }
    }

    /// API calls made so far (including retries).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// `sl-violations` headers seen (set by a validating proxy in the contract test).
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().expect("violations lock").clone()
    }

    /// Persist ETags and cached answers for the next run.
    pub fn save(&self) {
        if let Some(p) = &self.cfg.cache_file {
            let c = self.cache.lock().expect("cache lock");
            if let Ok(b) = serde_json::to_vec(&*c) {
                let _ = std::fs::write(p, b);
            }
        }
    }

    /// The full URL of an API path, or of a pagination link, which must point into the API
    /// root this client was given (the token is never sent anywhere else).
    fn url_of(&self, path: &str) -> Result<String, ForgeError> {
        let root = self.cfg.api.trim_end_matches('/');
        if !path.contains("://") {
            return Ok(format!("{root}{path}"));
        }
        match path.strip_prefix(root) {
            Some(rest) if rest.starts_with('/') => Ok(path.to_string()),
            _ => Err(ForgeError::Api(format!(
                "GitHub sent a link outside {root}: {path}; not followed"
            ))),
        }
    }

    /// Every item of a list endpoint, following `Link: rel="next"`; the flag is false when
    /// the first page was unchanged (304), in which case the cached whole list is returned.
    async fn list_all(&self, path: &str, what: &str) -> Result<(Vec<Value>, bool), ForgeError> {
        let key = self.url_of(path)?;
        let first = self.call(Method::GET, path, None).await?;
        if !first.status.is_success() {
            return Err(api_err(what, first.status, &first.body));
        }
        if !first.fresh {
            let cached = self
                .cache
                .lock()
                .expect("cache lock")
                .lists
                .get(&key)
                .cloned();
            if let Some(all) = cached.and_then(|t| serde_json::from_str(&t).ok()) {
                return Ok((all, false));
            }
        }
        let mut items = first.body.as_array().cloned().unwrap_or_default();
        let mut next = first.next;
        // A bound on pages, so a server that links in a circle cannot hold the tick.
        for _ in 0..100 {
            let Some(url) = next.take() else { break };
            let a = self.call(Method::GET, &url, None).await?;
            if !a.status.is_success() {
                return Err(api_err(what, a.status, &a.body));
            }
            items.extend(a.body.as_array().cloned().unwrap_or_default());
            next = a.next;
        }
        if let Ok(t) = serde_json::to_string(&items) {
            self.cache.lock().expect("cache lock").lists.insert(key, t);
        }
        Ok((items, first.fresh))
    }

    fn repo_path(&self, tail: &str) -> String {
        format!("/repos/{}/{}{tail}", self.cfg.owner, self.cfg.repo)
    }

    /// One REST call with conditional GETs, retries and counting.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ForgeError> {
        self.call_opts(method, path, body, true).await
    }

    /// A create (POST) that must not be repeated blindly: a 5xx may hide a completed write,
    /// so the caller looks again before creating again.
    async fn create(&self, path: &str, body: &Value) -> Result<Answer, ForgeError> {
        self.call_opts(Method::POST, path, Some(body), false).await
    }

    async fn call_opts(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry_server_errors: bool,
    ) -> Result<Answer, ForgeError> {
        if ![Method::GET, Method::POST, Method::PATCH, Method::PUT].contains(&method) {
            return Err(ForgeError::Api(format!("unsupported method {method}")));
        }
        let url = self.url_of(path)?;
        // Content-creating calls go one at a time (GitHub's secondary rate limits).
        let writes = if method == Method::GET {
            None
        } else {
            Some(self.writes.lock().await)
        };
        let cached = self.cached_etag(&method, &url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.calls.fetch_add(1, Ordering::SeqCst);
            let reply = match self
                .exchange(&method, &url, path, body, cached.as_ref())
                .await
            {
                Ok(r) => r,
                // A create that timed out may have happened: only reads are retried blindly.
                Err(e) if attempt < MAX_ATTEMPTS && retry_server_errors => {
                    tracing::warn!("GitHub {method} {path}: {e}; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(ForgeError::Api(format!("GitHub {method} {path}: {e}"))),
            };
            if reply.status == StatusCode::NOT_MODIFIED
                && let Some((_, body)) = &cached
            {
                return Ok(Answer {
                    status: StatusCode::OK,
                    body: serde_json::from_str(body).unwrap_or(Value::Null),
                    fresh: false,
                    next: link_next(&reply.headers),
                });
            }
            if attempt < MAX_ATTEMPTS
                && let Some(wait) = retry_after(&method, path, &reply, retry_server_errors)
            {
                tokio::time::sleep(wait).await;
                continue;
            }
            self.remember_etag(&method, &url, &reply);
            drop(writes);
            return Ok(Answer {
                status: reply.status,
                next: link_next(&reply.headers),
                body: reply.json,
                fresh: true,
            });
        }
    }

    /// The ETag and body of the last answer to a GET of `url`, for a conditional request.
    fn cached_etag(&self, method: &Method, url: &str) -> Option<(String, String)> {
        if *method != Method::GET {
            return None;
        }
        let cache = self.cache.lock().expect("cache lock");
        cache.etags.get(url).cloned()
    }

    fn remember_etag(&self, method: &Method, url: &str, reply: &Reply) {
        let etag = reply
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok());
        if *method == Method::GET
            && reply.status.is_success()
            && let Some(e) = etag
        {
            let mut cache = self.cache.lock().expect("cache lock");
            cache
                .etags
                .insert(url.to_string(), (e.to_string(), reply.text.clone()));
        }
    }

    /// One request and its whole answer.
    async fn exchange(
        &self,
        method: &Method,
        url: &str,
        path: &str,
        body: Option<&Value>,
        cached: Option<&(String, String)>,
    ) -> Result<Reply, octocrab::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        if let Some((etag, _)) = cached
            && let Ok(v) = HeaderValue::from_str(etag)
        {
            headers.insert(http::header::IF_NONE_MATCH, v);
        }
        let res = match *method {
            Method::GET => self.client._get_with_headers(url, Some(headers)).await,
            Method::POST => self.client._post(url, body).await,
            Method::PATCH => self.client._patch(url, body).await,
            _ => self.client._put(url, body).await,
        }?;
        let status = res.status();
        let headers = res.headers().clone();
        if let Some(b) = budget_of(&headers, chrono::Utc::now()) {
            self.cache.lock().expect("cache lock").rate = Some(b);
        }
        if let Some(v) = headers.get("sl-violations").and_then(|v| v.to_str().ok()) {
            self.violations
                .lock()
                .expect("violations lock")
                .push(format!("{method} {path}: {v}"));
        }
        let text = self.client.body_to_string(res).await.unwrap_or_default();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        Ok(Reply {
            status,
            headers,
            text,
            json,
        })
    }

    async fn pull(&self, n: u64) -> Result<Answer, ForgeError> {
        let a = self
            .call(Method::GET, &self.repo_path(&format!("/pulls/{n}")), None)
            .await?;
        if !a.status.is_success() {
            return Err(api_err(
                &format!("get pull request #{n}"),
                a.status,
                &a.body,
            ));
        }
        Ok(a)
    }

    async fn find_pull(&self, branch: &str) -> Result<Option<Value>, ForgeError> {
        let q = format!(
            "/pulls?state=all&head={}:{}&per_page=100",
            self.cfg.owner, branch
        );
        let (prs, _) = self
            .list_all(&self.repo_path(&q), "list pull requests")
            .await?;
        // The newest PR for this head wins (older ones may be closed leftovers).
        Ok(prs
            .into_iter()
            .max_by_key(|p| p["number"].as_u64().unwrap_or(0)))
    }

    fn check_runs_on(&self) -> bool {
        self.cfg.check_runs && !self.check_runs_refused.load(Ordering::SeqCst)
    }

    /// Create or update the check run of `head`. Only GitHub Apps may write check runs: a
    /// 403 with another token turns them off for this process, said once, and the commit
    /// status (already posted) carries the gate alone.
    async fn check_run(
        &self,
        head: &str,
        state: &str,
        description: &str,
    ) -> Result<(), ForgeError> {
        let mut run = json!({ "name": "fleetwave", "head_sha": head, "output": { "title": description, "summary": description } });
        match state {
            "pending" => run["status"] = json!("in_progress"),
            done => {
                run["status"] = json!("completed");
                run["conclusion"] = json!(done);
            }
        }
        let known = self
            .cache
            .lock()
            .expect("cache lock")
            .check_runs
            .get(head)
            .copied();
        let a = match known {
            Some(id) => {
                let path = self.repo_path(&format!("/check-runs/{id}"));
                self.call(Method::PATCH, &path, Some(&run)).await?
            }
            None => {
                self.call(Method::POST, &self.repo_path("/check-runs"), Some(&run))
                    .await?
            }
        };
        if a.status == StatusCode::FORBIDDEN {
            self.refuse_check_runs(&a);
            return Ok(());
        }
        if !a.status.is_success() {
            return Err(api_err("write the check run", a.status, &a.body));
        }
        if let Some(id) = a.body["id"].as_u64() {
            self.cache
                .lock()
                .expect("cache lock")
                .check_runs
                .insert(head.to_string(), id);
        }
        Ok(())
    }

    fn refuse_check_runs(&self, a: &Answer) {
        self.check_runs_refused.store(true, Ordering::SeqCst);
        self.cache.lock().expect("cache lock").check_runs_refused = true;
        let msg = a.body["message"].as_str().unwrap_or("");
        self.warn_once(
            "check-runs",
            &format!(
                "GitHub refused the check run (403 {msg}): only GitHub Apps can write check \
                 runs; the fleetwave/gate commit status carries the gate instead \
                 (drop --check-runs, or use --github-app-id)"
            ),
        );
    }

    /// After a merge call whose answer was lost or refused: read the PR back and report what
    /// GitHub did. Merged at the verified head: the merge commit; otherwise the error.
    async fn merged_anyway(&self, n: u64, head: &str, why: &str) -> Result<String, ForgeError> {
        let pr = self.pull(n).await?.body;
        let merged = pr["merged"].as_bool() == Some(true) || pr["merged_at"].is_string();
        match (merged, pr["merge_commit_sha"].as_str()) {
            (true, Some(sha)) if pr["head"]["sha"].as_str() == Some(head) => {
                tracing::info!("merge of #{n} answered {why}; read back: merged as {sha}");
                Ok(sha.to_string())
            }
            (true, _) => Err(ForgeError::Api(format!(
                "merge of pull request #{n} answered {why}; read back: it was merged, but not \
                 at the verified head {head}"
            ))),
            (false, _) => Err(ForgeError::Api(format!(
                "merge of pull request #{n} answered {why}; read back: not merged"
            ))),
        }
    }

    /// The whole list last read from `path` (all pages), if cached.
    fn cached_list(&self, path: &str) -> Option<Vec<Value>> {
        let url = self.url_of(path).ok()?;
        let cache = self.cache.lock().expect("cache lock");
        serde_json::from_str(cache.lists.get(&url)?).ok()
    }

    /// The last answer for PR `n` kept in the ETag cache, if any.
    fn cached_pull(&self, n: u64) -> Option<Value> {
        let url = self.url_of(&self.repo_path(&format!("/pulls/{n}"))).ok()?;
        let cache = self.cache.lock().expect("cache lock");
        let (_, body) = cache.etags.get(&url)?;
        serde_json::from_str(body).ok()
    }

    /// An approving review on the current head by someone the gate accepts: a user or team
    /// member named in the plan or on the command line, or, when nobody is named, any
    /// collaborator (owner, member or collaborator of the repository).
    async fn approved(
        &self,
        reviews: &[Value],
        head: &str,
        who: &super::Approvers,
    ) -> Result<bool, ForgeError> {
        // The latest review per user counts; dismissed reviews and reviews of older heads do not.
        let mut latest: BTreeMap<String, &Value> = BTreeMap::new();
        for r in reviews {
            if r["state"].as_str() == Some("COMMENTED") {
                continue;
            }
            let user = r["user"]["login"].as_str().unwrap_or("").to_string();
            latest.insert(user, r);
        }
        let users: Vec<&String> = who.users.iter().chain(&self.cfg.approvers).collect();
        let teams: Vec<&String> = who.teams.iter().chain(&self.cfg.approver_teams).collect();
        for (user, r) in &latest {
            if r["state"].as_str() != Some("APPROVED") || r["commit_id"].as_str() != Some(head) {
                continue;
            }
            let ok = if users.is_empty() && teams.is_empty() {
                matches!(
                    r["author_association"].as_str(),
                    Some("OWNER" | "MEMBER" | "COLLABORATOR")
                )
            } else {
                users.iter().any(|a| a.eq_ignore_ascii_case(user))
                    || self.team_member(user, &teams).await?
            };
            if ok {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn team_member(&self, user: &str, teams: &[&String]) -> Result<bool, ForgeError> {
        for t in teams {
            // A team named without its organization belongs to the repository's owner.
            let (org, team) = t.split_once('/').unwrap_or((&self.cfg.owner, t));
            let path = format!("/orgs/{org}/teams/{team}/memberships/{user}");
            let a = self.call(Method::GET, &path, None).await?;
            if a.status.is_success() && a.body["state"].as_str() == Some("active") {
                return Ok(true);
            }
            if !a.status.is_success() && a.status != StatusCode::NOT_FOUND {
                // 403: the token cannot read the org's teams (GITHUB_TOKEN never can).
                self.warn_once(
                    &format!("team:{t}"),
                    &format!(
                        "cannot check membership of team {t} ({}): the token needs the \
                         organization's members:read permission; approvals by its members \
                         do not count until then (name users instead, or use a GitHub App)",
                        a.status
                    ),
                );
            }
        }
        Ok(false)
    }

    fn pr_obs(&self, pr: &Value, base_head: &str, approved: bool) -> Result<PrObs, ForgeError> {
        let head = pr["head"]["sha"].as_str().unwrap_or("").to_string();
        let merged = pr["merged"].as_bool().unwrap_or(false) || pr["merged_at"].is_string();
        let merged = if merged {
            let commit = pr["merge_commit_sha"].as_str().unwrap_or(&head).to_string();
            let at = pr["merged_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(chrono::Utc::now);
            Some((commit, at))
        } else {
            None
        };
        // Branch content comes from Git: the tree, the base it sits on, and who committed.
        // A head the clone does not have was pushed after this tick's fetch: fetch again,
        // and if it is still unknown treat it as foreign (never overwrite what we cannot see).
        let git = self.git()?;
        if merged.is_none() && git.commit_info(&head).is_err() {
            git.fetch()?;
        }
        let (tree, base, foreign) = if merged.is_some() {
            (String::new(), base_head.to_string(), Vec::new())
        } else if git.commit_info(&head).is_ok() {
            let own = git.commits_between(base_head, &head)?;
            let foreign = own
                .iter()
                .filter(|c| c.author_email != self.author_email)
                .map(|c| format!("{} by {}", &c.id[..c.id.len().min(10)], c.author_email))
                .collect();
            let base = own
                .first()
                .and_then(|c| c.parents.first().cloned())
                .unwrap_or_else(|| base_head.to_string());
            (git.tree_id(&head)?, base, foreign)
        } else {
            (
                String::new(),
                base_head.to_string(),
                vec![format!("{} (not fetched)", &head[..head.len().min(10)])],
            )
        };
        Ok(PrObs {
            number: pr["number"].as_u64(),
            head,
            tree,
            base,
            merged,
            open: pr["state"].as_str() == Some("open"),
            foreign,
            approved,
            needs_pr: false,
        })
    }

    /// The id of the managed comment with `marker` on PR `n`, looked up when not cached.
    async fn find_comment(
        &self,
        n: u64,
        marker: &str,
        key: &str,
    ) -> Result<Option<u64>, ForgeError> {
        if let Some(id) = self
            .cache
            .lock()
            .expect("cache lock")
            .comments
            .get(key)
            .copied()
        {
            return Ok(Some(id));
        }
        let path = self.repo_path(&format!("/issues/{n}/comments?per_page=100"));
        let (comments, _) = self.list_all(&path, "list comments").await?;
        Ok(comments
            .iter()
            .find(|c| c["body"].as_str().is_some_and(|b| b.starts_with(marker)))
            .and_then(|c| c["id"].as_u64()))
    }

    /// Create or update a managed comment on a PR (one per PR and marker, edited in place).
    pub async fn comment(&self, n: u64, marker: &str, body: &str) -> Result<(), ForgeError> {
        // What is posted may quote the repository or a cluster: no control characters.
        let body = format!("{marker}\n{}", crate::core::diag::escape(body));
        let key = format!("{n}/{marker}");
        let mut attempts = 0;
        let a = loop {
            attempts += 1;
            let a = match self.find_comment(n, marker, &key).await? {
                Some(id) => {
                    self.call(
                        Method::PATCH,
                        &self.repo_path(&format!("/issues/comments/{id}")),
                        Some(&json!({ "body": body })),
                    )
                    .await?
                }
                None => {
                    self.create(
                        &self.repo_path(&format!("/issues/{n}/comments")),
                        &json!({ "body": body }),
                    )
                    .await?
                }
            };
            if a.status.is_success() || attempts == 3 {
                break a;
            }
            // A deleted comment, or a create that may have happened: look again.
            self.cache.lock().expect("cache lock").comments.remove(&key);
        };
        if !a.status.is_success() {
            return Err(api_err("write the managed comment", a.status, &a.body));
        }
        if let Some(id) = a.body["id"].as_u64() {
            self.cache
                .lock()
                .expect("cache lock")
                .comments
                .insert(key, id);
        }
        Ok(())
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 * 2u64.pow(attempt.min(5))).min(Duration::from_secs(8))
}

/// How long to wait before retrying, if the answer says to retry at all.
fn retry_wait(status: StatusCode, h: &HeaderMap, body: &Value) -> Option<Duration> {
    let header = |k: &str| {
        h.get(k)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let retry_after = header("retry-after").map(Duration::from_secs);
    let secondary = body["message"]
        .as_str()
        .is_some_and(|m| m.contains("secondary rate limit"));
    let exhausted = header("x-ratelimit-remaining") == Some(0);
    match status {
        StatusCode::TOO_MANY_REQUESTS => Some(retry_after.unwrap_or(Duration::from_secs(1))),
        StatusCode::FORBIDDEN if retry_after.is_some() || secondary => {
            Some(retry_after.unwrap_or(Duration::from_secs(60)))
        }
        StatusCode::FORBIDDEN if exhausted => {
            let reset = header("x-ratelimit-reset").unwrap_or(0);
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            Some(Duration::from_secs(reset.saturating_sub(now) + 1))
        }
        s if s.is_server_error() => Some(retry_after.unwrap_or(Duration::from_millis(500))),
        _ => None,
    }
    .map(|d| d.min(MAX_WAIT))
}

impl Forge for GitHubForge<'_> {
    async fn observe(
        &self,
        steps: &[StepRef],
        base_head: &str,
    ) -> Result<BTreeMap<String, PrObs>, ForgeError> {
        let mut out = BTreeMap::new();
        let base_moved =
            self.cache.lock().expect("cache lock").last_base.as_deref() != Some(base_head);
        for s in steps {
            // A PR waiting on an approving review is polled through its reviews (a new review
            // does not change the PR's own ETag): one conditional GET a tick. The PR itself is
            // read again only when the base moved (a merge always moves it) or it is not in
            // the cache (a fresh runner), so approvals are read on every tick, warm or cold.
            let cached_pr = s.pr.and_then(|n| self.cached_pull(n));
            let warm = cached_pr.is_some();
            // Warm cache, base unmoved: the PR is the cached one and the reviews are polled.
            // Base moved (merges move it): the PR is read and the last tick's reviews are used.
            // Cold (a fresh runner): both are read, the PR first so the reviews match its head.
            let reread_pr = base_moved || !warm || s.approval.is_none();
            let pr = match s.pr {
                Some(_) if !reread_pr => cached_pr,
                Some(n) => Some(self.pull(n).await?.body),
                // Only steps fleetwave pushed (or that a crash left behind) can have a PR.
                None if self.git()?.branch_head(&s.branch)?.is_some() => {
                    self.find_pull(&s.branch).await?
                }
                None => None,
            };
            let reviews = match (s.pr, &s.approval) {
                (Some(n), Some(_)) => {
                    let path = self.repo_path(&format!("/pulls/{n}/reviews?per_page=100"));
                    match self.cached_list(&path) {
                        Some(last) if base_moved && warm => Some(last),
                        _ => Some(self.list_all(&path, "list reviews").await?.0),
                    }
                }
                _ => None,
            };
            let Some(pr) = pr else {
                if let Some(head) = self.git()?.branch_head(&s.branch)? {
                    // A branch without a PR (a crash between push and create): open it next.
                    let own = self.git()?.commits_between(base_head, &head)?;
                    let base = own
                        .first()
                        .and_then(|c| c.parents.first().cloned())
                        .unwrap_or_else(|| base_head.to_string());
                    out.insert(
                        s.branch.clone(),
                        PrObs {
                            number: None,
                            tree: self.git()?.tree_id(&head)?,
                            head,
                            base,
                            open: true,
                            needs_pr: true,
                            ..Default::default()
                        },
                    );
                }
                continue;
            };
            let open = pr["state"].as_str() == Some("open");
            let head = pr["head"]["sha"].as_str().unwrap_or("");
            let approved = match (&reviews, &s.approval, open) {
                (Some(list), Some(who), true) => self.approved(list, head, who).await?,
                _ => false,
            };
            out.insert(s.branch.clone(), self.pr_obs(&pr, base_head, approved)?);
        }
        self.cache.lock().expect("cache lock").last_base = Some(base_head.to_string());
        Ok(out)
    }

    async fn open(&self, step: &StepRef, spec: &PrSpec) -> Result<Option<u64>, ForgeError> {
        let clean = PrSpec {
            body: crate::core::diag::escape(&spec.body).into_owned(),
            title: crate::core::diag::escape(&spec.title).into_owned(),
            ..spec.clone()
        };
        let spec = &clean;
        let existing = match step.pr {
            Some(n) => Some(self.pull(n).await?.body),
            None => None,
        };
        let pr = match existing.filter(|p| p["state"].as_str() == Some("open")) {
            Some(p) => p,
            None => self.create_pull(step, spec).await?,
        };
        let n = pr["number"]
            .as_u64()
            .ok_or_else(|| ForgeError::Api("pull request without a number".into()))?;
        self.update_pull(n, &pr, spec).await?;
        Ok(Some(n))
    }

    async fn set_status(
        &self,
        _step: &StepRef,
        head: &str,
        state: GateState,
        description: &str,
    ) -> Result<(), ForgeError> {
        let state = match state {
            GateState::Pending => "pending",
            GateState::Success => "success",
            GateState::Failure => "failure",
        };
        let mut body = json!({ "state": state, "description": description, "context": CONTEXT });
        if let Some(u) = &self.cfg.target_url {
            body["target_url"] = json!(u);
        }
        let a = self
            .call(
                Method::POST,
                &self.repo_path(&format!("/statuses/{head}")),
                Some(&body),
            )
            .await?;
        if !a.status.is_success() {
            return Err(api_err("set commit status", a.status, &a.body));
        }
        if self.check_runs_on() {
            self.check_run(head, state, description).await?;
        }
        Ok(())
    }

    async fn merge(&self, step: &StepRef, head: &str, message: &str) -> Result<String, ForgeError> {
        let n = match step.pr {
            Some(n) => n,
            None => self
                .find_pull(&step.branch)
                .await?
                .and_then(|p| p["number"].as_u64())
                .ok_or_else(|| ForgeError::Api(format!("no pull request for {}", step.branch)))?,
        };
        let body = json!({ "sha": head, "merge_method": self.cfg.merge_method.as_str(), "commit_title": message });
        // Not retried blindly: a lost answer (5xx, timeout) may hide a merge that happened.
        let path = self.repo_path(&format!("/pulls/{n}/merge"));
        let a = match self.call_opts(Method::PUT, &path, Some(&body), false).await {
            Ok(a) => a,
            Err(e) => return self.merged_anyway(n, head, &e.to_string()).await,
        };
        match a.status {
            s if s.is_success() && a.body["merged"].as_bool() != Some(false) => a.body["sha"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ForgeError::Api("merge answer without a sha".into())),
            // The head moved after fleetwave verified it: never merge what was not checked.
            StatusCode::CONFLICT => Err(ForgeError::BaseMoved),
            s if s.is_server_error() || s == StatusCode::METHOD_NOT_ALLOWED => {
                self.merged_anyway(n, head, &format!("{s}")).await
            }
            s => Err(api_err(&format!("merge pull request #{n}"), s, &a.body)),
        }
    }

    async fn comment(&self, step: &StepRef, body: &str) -> Result<(), ForgeError> {
        // The check run carries the same per-cluster table as the comment.
        let run = step.head.as_ref().and_then(|h| {
            self.cache
                .lock()
                .expect("cache lock")
                .check_runs
                .get(h)
                .copied()
        });
        if let (true, Some(id)) = (self.check_runs_on(), run) {
            let a = self.call(Method::PATCH, &self.repo_path(&format!("/check-runs/{id}")), Some(&json!({ "output": { "title": "fleetwave gate", "summary": "Per-cluster state of this step", "text": body } }))).await?;
            if a.status == StatusCode::FORBIDDEN {
                self.refuse_check_runs(&a);
            } else if !a.status.is_success() {
                return Err(api_err("write the check run", a.status, &a.body));
            }
        }
        match step.pr {
            Some(n) => GitHubForge::comment(self, n, STEP_COMMENT, body).await,
            None => Ok(()),
        }
    }

    async fn close_stale(&self, prefix: &str, keep: &[String]) -> Result<Vec<String>, ForgeError> {
        self.close_under(
            prefix,
            keep,
            "the plan changed: this step is gone; closed by fleetwave",
            "Closed by fleetwave: the plan changed and no longer has this step.",
        )
        .await
    }

    async fn close_prs(&self, prefix: &str, why: &str) -> Result<Vec<String>, ForgeError> {
        let status: String = format!("{why}; closed by fleetwave")
            .chars()
            .take(140)
            .collect();
        self.close_under(
            prefix,
            &[],
            &status,
            &format!("Closed by fleetwave: {why}."),
        )
        .await
    }

    async fn dashboard(&self, plan: &str, body: &str) -> Result<(), ForgeError> {
        let rate = self.cache.lock().expect("cache lock").rate.clone();
        let body = &with_budget(&crate::core::diag::escape(body), rate.as_ref());
        let title = format!("fleetwave: {plan}");
        let known = self
            .cache
            .lock()
            .expect("cache lock")
            .dashboards
            .get(plan)
            .cloned();
        // The "Updated …" line alone does not warrant a write.
        let same = |a: &str, b: &str| {
            let keep = |t: &str| {
                t.lines()
                    .filter(|l| !l.starts_with(super::DASHBOARD_UPDATED))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            keep(a) == keep(b)
        };
        if known.as_ref().is_some_and(|(_, b)| same(b, body)) {
            return Ok(());
        }
        let number = match known {
            Some((n, _)) => Some(n),
            None => {
                let path =
                    self.repo_path("/issues?state=open&labels=fleetwave-dashboard&per_page=100");
                let (issues, _) = self.list_all(&path, "list dashboard issues").await?;
                issues
                    .iter()
                    .find(|i| i["title"].as_str() == Some(title.as_str()))
                    .and_then(|i| i["number"].as_u64())
            }
        };
        let a = match number {
            Some(n) => {
                self.call(
                    Method::PATCH,
                    &self.repo_path(&format!("/issues/{n}")),
                    Some(&json!({ "body": body })),
                )
                .await?
            }
            None => {
                // On failure the next tick searches by title again before creating.
                self.create(
                    &self.repo_path("/issues"),
                    &json!({ "title": title, "body": body, "labels": ["fleetwave-dashboard"] }),
                )
                .await?
            }
        };
        if !a.status.is_success() {
            self.cache
                .lock()
                .expect("cache lock")
                .dashboards
                .remove(plan);
            return Err(api_err("write the dashboard issue", a.status, &a.body));
        }
        if let Some(n) = a.body["number"].as_u64().or(number) {
            self.cache
                .lock()
                .expect("cache lock")
                .dashboards
                .insert(plan.to_string(), (n, body.to_string()));
        }
        Ok(())
    }

    fn reviews(&self) -> bool {
        true
    }

    fn finish_tick(&self) -> Option<usize> {
        self.save();
        // Only a validating proxy (the contract test's Prism) sets this header.
        for v in self.violations() {
            eprintln!("warning: sl-violations: {v}");
        }
        Some(self.calls())
    }
}

impl GitHubForge<'_> {
    /// Open the pull request of `step` (one that exists already is found, not duplicated).
    async fn create_pull(&self, step: &StepRef, spec: &PrSpec) -> Result<Value, ForgeError> {
        let body = json!({ "title": spec.title, "head": step.branch, "base": spec.base, "body": spec.body });
        let mut a = self.create(&self.repo_path("/pulls"), &body).await?;
        for _ in 0..3 {
            if !a.status.is_server_error() {
                break;
            }
            // The create may have happened: look before creating again.
            if let Some(found) = self
                .find_pull(&step.branch)
                .await?
                .filter(|p| p["state"].as_str() == Some("open"))
            {
                a = Answer {
                    status: StatusCode::CREATED,
                    body: found,
                    fresh: true,
                    next: None,
                };
                break;
            }
            a = self.create(&self.repo_path("/pulls"), &body).await?;
        }
        if a.status == StatusCode::UNPROCESSABLE_ENTITY
            && a.body.to_string().contains("already exists")
        {
            self.find_pull(&step.branch)
                .await?
                .ok_or_else(|| api_err("create pull request", a.status, &a.body))
        } else if a.status.is_success() {
            Ok(a.body)
        } else {
            Err(api_err("create pull request", a.status, &a.body))
        }
    }

    /// Bring pull request `n` (as read: `pr`) to `spec`'s title, body and labels.
    async fn update_pull(&self, n: u64, pr: &Value, spec: &PrSpec) -> Result<(), ForgeError> {
        // Update title and body only when they changed.
        if pr["title"].as_str() != Some(spec.title.as_str())
            || pr["body"].as_str() != Some(spec.body.as_str())
        {
            let a = self
                .call(
                    Method::PATCH,
                    &self.repo_path(&format!("/pulls/{n}")),
                    Some(&json!({ "title": spec.title, "body": spec.body })),
                )
                .await?;
            if !a.status.is_success() {
                return Err(api_err("update pull request", a.status, &a.body));
            }
        }
        let have: Vec<&str> = pr["labels"]
            .as_array()
            .map(|l| l.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        let missing: Vec<&String> = self
            .cfg
            .labels
            .iter()
            .filter(|l| !have.contains(&l.as_str()))
            .collect();
        if !missing.is_empty() {
            let a = self
                .call(
                    Method::POST,
                    &self.repo_path(&format!("/issues/{n}/labels")),
                    Some(&json!({ "labels": missing })),
                )
                .await?;
            if !a.status.is_success() {
                return Err(api_err("label pull request", a.status, &a.body));
            }
        }
        Ok(())
    }

    /// Close open step pull requests under `prefix` but those in `keep`: a failed
    /// `fleetwave/gate` status on the head, `comment`, then the close.
    async fn close_under(
        &self,
        prefix: &str,
        keep: &[String],
        status: &str,
        comment: &str,
    ) -> Result<Vec<String>, ForgeError> {
        let full = format!("{}/{}", self.cfg.owner, self.cfg.repo);
        let mut stale = Vec::new();
        let path = self.repo_path("/pulls?state=open&per_page=100");
        let (prs, _) = self.list_all(&path, "list pull requests").await?;
        for pr in &prs {
            let head = pr["head"]["ref"].as_str().unwrap_or("");
            // Only fleetwave's own step branches in this repository; never forks or rollbacks.
            let ours = pr["head"]["repo"]["full_name"]
                .as_str()
                .is_none_or(|r| r.eq_ignore_ascii_case(&full));
            if ours
                && head.starts_with(prefix)
                && !head.ends_with("/rollback")
                && !keep.iter().any(|k| k == head)
            {
                if let Some(n) = pr["number"].as_u64() {
                    stale.push((
                        n,
                        head.to_string(),
                        pr["head"]["sha"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        let mut closed = Vec::new();
        for (n, head, sha) in stale {
            if !sha.is_empty() {
                let step = StepRef {
                    branch: head.clone(),
                    pr: Some(n),
                    head: Some(sha.clone()),
                    approval: None,
                };
                self.set_status(&step, &sha, GateState::Failure, status)
                    .await?;
            }
            GitHubForge::comment(self, n, STEP_COMMENT, comment).await?;
            let c = self
                .call(
                    Method::PATCH,
                    &self.repo_path(&format!("/pulls/{n}")),
                    Some(&json!({ "state": "closed" })),
                )
                .await?;
            if !c.status.is_success() {
                return Err(api_err(
                    &format!("close stale pull request #{n}"),
                    c.status,
                    &c.body,
                ));
            }
            closed.push(format!("#{n} {head}"));
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers of GitHub's own example in "Rate limits for the REST API" (REST docs,
    /// "Checking the status of your rate limit": limit 5000, remaining 4999, used 1,
    /// reset 1691591363, resource core).
    fn documented_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4999"),
            ("x-ratelimit-used", "1"),
            ("x-ratelimit-reset", "1691591363"),
            ("x-ratelimit-resource", "core"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_core_budget_is_read_from_the_documented_headers() {
        let now = chrono::DateTime::from_timestamp(1_691_590_000, 0).unwrap();
        let b = budget_of(&documented_headers(), now).unwrap();
        assert_eq!((b.limit, b.remaining), (5000, 4999));
        assert_eq!(b.reset.timestamp(), 1_691_591_363);
        assert_eq!(b.seen_at, now);
        let mut search = documented_headers();
        search.insert("x-ratelimit-resource", HeaderValue::from_static("search"));
        assert_eq!(budget_of(&search, now), None, "another resource's budget");
        let mut none = documented_headers();
        none.remove("x-ratelimit-remaining");
        assert_eq!(budget_of(&none, now), None);
    }

    #[test]
    fn the_dashboard_carries_the_budget_on_its_updated_line_only() {
        let now = chrono::DateTime::from_timestamp(1_691_590_000, 0).unwrap();
        let b = budget_of(&documented_headers(), now).unwrap();
        let body = "## rollout\n\nUpdated 2023-08-09 14:06 UTC.\n\n### wave\n";
        let shown = with_budget(body, Some(&b));
        let updated: Vec<&str> = shown
            .lines()
            .filter(|l| l.starts_with("Updated "))
            .collect();
        assert_eq!(updated.len(), 1);
        assert!(updated[0].contains("4999 of 5000 requests left"), "{shown}");
        let others = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with("Updated "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(others(&shown), others(body));
        assert_eq!(with_budget(body, None), body);
    }

    #[test]
    fn owner_and_repo_from_remotes() {
        assert_eq!(
            owner_repo("https://github.com/Acme/fleet.git"),
            Some(("Acme".into(), "fleet".into()))
        );
        assert_eq!(
            owner_repo("git@github.com:acme/fleet.git"),
            Some(("acme".into(), "fleet".into()))
        );
        assert_eq!(
            owner_repo("http://127.0.0.1:8080/acme/fleet.git"),
            Some(("acme".into(), "fleet".into()))
        );
        assert_eq!(owner_repo("not a url"), None);
    }

    #[test]
    fn retry_waits_follow_github_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(
            retry_wait(StatusCode::TOO_MANY_REQUESTS, &h, &Value::Null),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_wait(StatusCode::FORBIDDEN, &h, &Value::Null),
            Some(Duration::from_secs(3))
        );
        let secondary = json!({"message": "You have exceeded a secondary rate limit."});
        assert_eq!(
            retry_wait(StatusCode::FORBIDDEN, &HeaderMap::new(), &secondary),
            Some(MAX_WAIT)
        );
        assert_eq!(
            retry_wait(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                &json!({"message": "Resource not accessible"})
            ),
            None
        );
        assert_eq!(
            retry_wait(StatusCode::BAD_GATEWAY, &HeaderMap::new(), &Value::Null),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_wait(
                StatusCode::UNPROCESSABLE_ENTITY,
                &HeaderMap::new(),
                &Value::Null
            ),
            None
        );
        let mut big = HeaderMap::new();
        big.insert("retry-after", HeaderValue::from_static("3600"));
        assert_eq!(
            retry_wait(StatusCode::TOO_MANY_REQUESTS, &big, &Value::Null),
            Some(MAX_WAIT),
            "bounded"
        );
    }
}
