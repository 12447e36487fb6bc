//! The read-only web dashboard: what `serve` answers on `GET /` and `GET /cluster`, and what
//! `status --output html` writes. It owns the dashboard's model ([`PlanSnapshot`], built once
//! per tick from the status report, the state and the audit log), the store the service keeps
//! the last snapshot of each plan in ([`Board`]), the grid's filters and pages ([`Query`]) and
//! the HTML (`render`, with maud: escaped by default, compiled in; no script, no CDN).
//!
//! A page view reads the stored snapshot only: it never asks Git, the forge or the clusters.

pub mod render;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::core::state::{PlanState, PlanStatus, StepStatus, WaveState, WaveStatus};
use crate::core::status::Report;

/// Clusters per grid page unless `size` says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// The largest page a query may ask for.
pub const MAX_PAGE_SIZE: usize = 5000;
/// Audit-log entries kept per plan.
pub const HISTORY_LEN: usize = 50;

/// Where a cluster is in the rollout, as the grid colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Pending,
    InProgress,
    Soaking,
    Converged,
    Failed,
    /// Its wave ran and no step changes it (already at the target).
    Skipped,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::InProgress,
        Phase::Soaking,
        Phase::Converged,
        Phase::Failed,
        Phase::Skipped,
    ];

    /// The word used in query parameters, CSS classes and the legend.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::InProgress => "in-progress",
            Phase::Soaking => "soaking",
            Phase::Converged => "converged",
            Phase::Failed => "failed",
            Phase::Skipped => "skipped",
        }
    }

    /// The legend's explanation.
    pub fn meaning(self) -> &'static str {
        match self {
            Phase::Pending => "its wave has not started",
            Phase::InProgress => "a step of its wave is open, or merged and not converged here",
            Phase::Soaking => "every step converged here; the wave is soaking",
            Phase::Converged => "every step of its wave that changes it converged here",
            Phase::Failed => "its wave recorded it as failed",
            Phase::Skipped => "its wave ran and no step changes it",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Whether a step concerns `cluster`: its recorded changes name it, or it has none recorded
/// yet (a pending step's changes are written when it is opened).
fn touches(step: &crate::core::state::StepState, cluster: &str) -> bool {
    step.changes.is_empty() || step.changes.iter().any(|c| c.cluster == cluster)
}

/// The phase of `cluster` in wave `ws` (None: the wave has not started).
pub fn phase(ws: Option<&WaveState>, cluster: &str) -> Phase {
    let Some(ws) = ws else {
        return Phase::Pending;
    };
    if ws.failed.contains_key(cluster) {
        return Phase::Failed;
    }
    if ws.status == WaveStatus::Pending {
        return Phase::Pending;
    }
    let live: Vec<_> = ws
        .steps
        .iter()
        .filter(|s| !matches!(s.status, StepStatus::Skipped | StepStatus::RolledBack))
        .collect();
    let mine: Vec<_> = live.iter().filter(|s| touches(s, cluster)).collect();
    if !ws.steps.is_empty() && mine.is_empty() {
        return Phase::Skipped;
    }
    let all_converged = !mine.is_empty() && mine.iter().all(|s| s.converged.contains_key(cluster));
    match ws.status {
        WaveStatus::Succeeded => Phase::Converged,
        WaveStatus::Soaking if all_converged => Phase::Soaking,
        _ if all_converged => Phase::Converged,
        _ => Phase::InProgress,
    }
}

/// Cluster → its labels.
pub type Labels = BTreeMap<String, BTreeMap<String, String>>;

/// One entry of the audit log (a commit of the state branch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    pub commit: String,
    pub message: String,
}

/// One plan as the dashboard shows it, taken after a tick.
#[derive(Debug, Clone)]
pub struct PlanSnapshot {
    /// Per wave and cluster: Git, running, Flux, gates, drift (`core::status`).
    pub report: Report,
    /// The rollout state: waves, steps, pull requests, failures, pause.
    pub state: PlanState,
    /// Each cluster's labels (shared between ticks while the fleet is unchanged).
    pub labels: Arc<Labels>,
    /// Newest first, at most [`HISTORY_LEN`].
    pub history: Vec<AuditEntry>,
    /// The repository's web address (`https://host/owner/repo`), for pull-request links.
    pub web: Option<String>,
    /// When a soaking wave's soak ends (its start plus the plan's soak).
    pub soak_ends: BTreeMap<String, DateTime<Utc>>,
    pub taken_at: DateTime<Utc>,
    /// Each row's phase, in `report.clusters` order.
    pub phases: Vec<Phase>,
}

impl PlanSnapshot {
    /// `soaks`: each wave's soak from the plan (for when a soaking wave ends).
    pub fn new(
        report: Report,
        state: PlanState,
        soaks: &BTreeMap<String, std::time::Duration>,
        labels: Arc<Labels>,
        history: Vec<AuditEntry>,
        web: Option<String>,
        taken_at: DateTime<Utc>,
    ) -> PlanSnapshot {
        let waves: BTreeMap<&str, &WaveState> =
            state.waves.iter().map(|w| (w.name.as_str(), w)).collect();
        let phases = report
            .clusters
            .iter()
            .map(|r| phase(waves.get(r.wave.as_str()).copied(), &r.cluster))
            .collect();
        let soak_ends = state
            .waves
            .iter()
            .filter(|w| w.status == WaveStatus::Soaking)
            .filter_map(|w| {
                let soak = *soaks.get(&w.name)?;
                let start = w.soak_started_at?;
                Some((
                    w.name.clone(),
                    start + chrono::Duration::from_std(soak).ok()?,
                ))
            })
            .collect();
        PlanSnapshot {
            report,
            state,
            labels,
            history,
            web,
            soak_ends,
            taken_at,
            phases,
        }
    }

    pub fn paused(&self) -> bool {
        self.state.status == PlanStatus::Paused
    }

    /// The link to pull request `n`, when the repository has a web address.
    pub fn pr_url(&self, n: u64) -> Option<String> {
        self.web.as_ref().map(|w| format!("{w}/pull/{n}"))
    }

    /// The waves in plan order with their cluster counts.
    pub fn waves(&self) -> Vec<(&str, usize)> {
        let mut out: Vec<(&str, usize)> = Vec::new();
        for r in &self.report.clusters {
            match out.last_mut() {
                Some((w, n)) if *w == r.wave => *n += 1,
                _ => out.push((&r.wave, 1)),
            }
        }
        out
    }

    /// Indices of the rows the query keeps, in order.
    pub fn filter(&self, q: &Query) -> Vec<usize> {
        self.report
            .clusters
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                q.wave.as_ref().is_none_or(|w| &r.wave == w)
                    && q.phase.is_none_or(|p| self.phases[*i] == p)
                    && q.label
                        .as_ref()
                        .is_none_or(|l| l.matches(self.labels.get(&r.cluster)))
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// `key=value` or `key` (the label is set, whatever its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
}

impl LabelFilter {
    pub fn parse(s: &str) -> Option<LabelFilter> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        Some(match s.split_once('=') {
            Some((k, v)) => LabelFilter {
                key: k.trim().to_string(),
                value: Some(v.trim().to_string()),
            },
            None => LabelFilter {
                key: s.to_string(),
                value: None,
            },
        })
    }

    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match labels.and_then(|l| l.get(&self.key)) {
            None => false,
            Some(v) => self.value.as_ref().is_none_or(|want| want == v),
        }
    }
}

/// The grid's filters and page, from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub plan: Option<String>,
    pub wave: Option<String>,
    pub label: Option<LabelFilter>,
    pub phase: Option<Phase>,
    /// 1-based.
    pub page: usize,
    pub size: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            plan: None,
            wave: None,
            label: None,
            phase: None,
            page: 1,
            size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl Query {
    /// Read `plan`, `wave`, `label`, `state`, `page` and `size`; empty values mean no
    /// filter, and a page or size that is not a number is the default.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Query {
        let mut q = Query::default();
        let some = |v: &str| (!v.trim().is_empty()).then(|| v.to_string());
        for (k, v) in pairs {
            match k {
                "plan" => q.plan = some(v),
                "wave" => q.wave = some(v),
                "label" => q.label = LabelFilter::parse(v),
                "state" => q.phase = Phase::parse(v.trim()),
                "page" => q.page = v.trim().parse().unwrap_or(1).max(1),
                "size" => {
                    q.size = v
                        .trim()
                        .parse()
                        .unwrap_or(DEFAULT_PAGE_SIZE)
                        .clamp(1, MAX_PAGE_SIZE)
                }
                _ => {}
            }
        }
        q
    }

    /// The query string of this query with `page` replaced (for the pager's links).
    pub fn to_query_string(&self, page: usize) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(p) = &self.plan {
            s.append_pair("plan", p);
        }
        if let Some(w) = &self.wave {
            s.append_pair("wave", w);
        }
        if let Some(l) = &self.label {
            match &l.value {
                Some(v) => s.append_pair("label", &format!("{}={v}", l.key)),
                None => s.append_pair("label", &l.key),
            };
        }
        if let Some(p) = self.phase {
            s.append_pair("state", p.as_str());
        }
        if self.size != DEFAULT_PAGE_SIZE {
            s.append_pair("size", &self.size.to_string());
        }
        s.append_pair("page", &page.to_string());
        s.finish()
    }
}

/// One page of `rows`: the slice shown and the number of pages (at least 1).
pub fn paginate(rows: &[usize], page: usize, size: usize) -> (&[usize], usize) {
    let size = size.max(1);
    let pages = rows.len().div_ceil(size).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * size;
    (
        &rows[start.min(rows.len())..(start + size).min(rows.len())],
        pages,
    )
}

/// The last snapshot of each plan, written after every tick and read by page views.
#[derive(Clone, Default)]
pub struct Board {
    plans: Arc<RwLock<BTreeMap<String, Arc<PlanSnapshot>>>>,
}

impl Board {
    pub fn put(&self, snap: PlanSnapshot) {
        let mut plans = self.plans.write().unwrap_or_else(|e| e.into_inner());
        plans.insert(snap.report.plan.clone(), Arc::new(snap));
    }

    /// Every plan's last snapshot, by plan name.
    pub fn get(&self) -> Vec<Arc<PlanSnapshot>> {
        let plans = self.plans.read().unwrap_or_else(|e| e.into_inner());
        plans.values().cloned().collect()
    }
}

/// How the page links: to the service's routes, or inside one static file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `serve`: filters and pages by query, a page per cluster, refreshed every N seconds.
    Live { refresh_secs: u64 },
    /// `status --output html`: every cluster on one page, details below the grid.
    Static,
}

/// The repository's web address from its remote (`https://host/owner/repo(.git)`,
/// `git@host:owner/repo`), for links to pull requests; None for local paths.
pub fn web_address(remote: &str) -> Option<String> {
    let norm = crate::core::repo_url::normalize_repo_url(remote)?;
    let (host, _) = norm.split_once('/')?;
    if host.is_empty() || !host.contains('.') {
        return None;
    }
    let tail = remote.trim_end_matches('/').trim_end_matches(".git");
    let mut segs = tail.rsplit(['/', ':']);
    let repo = segs.next()?;
    let owner = segs.next()?;
    let scheme = if remote.starts_with("http://") {
        "http"
    } else {
        "https"
    };
    Some(format!("{scheme}://{host}/{owner}/{repo}"))
}

/// The dashboard's routes (`GET /`, `GET /cluster?plan=P&name=C`) over `board`; pages ask
/// browsers to reload every `refresh_secs`.
pub fn routes(board: Board, refresh_secs: u64) -> axum::Router {
    use axum::extract::{RawQuery, State};
    use axum::routing::get;
    let state = (board, refresh_secs.max(1));
    axum::Router::new()
        .route(
            "/",
            get(
                |State((b, r)): State<(Board, u64)>, RawQuery(raw): RawQuery| async move {
                    let pairs = parse_pairs(raw.as_deref());
                    let q = Query::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    html(
                        axum::http::StatusCode::OK,
                        render::page(&b.get(), &q, Mode::Live { refresh_secs: r }),
                    )
                },
            ),
        )
        .route(
            "/cluster",
            get(
                |State((b, r)): State<(Board, u64)>, RawQuery(raw): RawQuery| async move {
                    cluster_response(&b, raw.as_deref(), r)
                },
            ),
        )
        .with_state(state)
}

fn parse_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn cluster_response(b: &Board, raw: Option<&str>, refresh: u64) -> axum::response::Response {
    let pairs = parse_pairs(raw);
    let get = |k: &str| pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    let (plan, name) = (get("plan"), get("name").unwrap_or(""));
    let page = b
        .get()
        .iter()
        .filter(|p| plan.is_none_or(|n| p.report.plan == n))
        .find_map(|p| render::cluster_page(p, name, refresh));
    match page {
        Some(body) => html(axum::http::StatusCode::OK, body),
        None => html(
            axum::http::StatusCode::NOT_FOUND,
            render::not_found(plan, name),
        ),
    }
}

/// An HTML answer with headers that keep it inert: no script, no framing, no sniffing.
fn html(status: axum::http::StatusCode, body: String) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, render::CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
