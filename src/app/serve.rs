//! `fleetwave serve`: the reconciler as a long-running service.
//!
//! One loop ticks the reconciler every `interval` and, debounced, whenever an event source
//! fires the [`Trigger`] (GitHub webhooks here, Kubernetes watches elsewhere). Ticks never
//! overlap; a failed or panicking tick is logged and counted and the loop goes on. Next to the
//! loop an HTTP server answers `/webhook`, `/metrics`, `/healthz` and `/readyz`, and unless
//! turned off the read-only dashboard (`crate::app::web`), there or on its own address.
//!
//! Shutdown: when the shutdown future resolves, the tick in progress (if any) is finished, then
//! the HTTP server drains its in-flight requests and [`Server::run`] returns.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{mpsc, watch};

/// Largest webhook body accepted (GitHub caps payloads at 25 MB; ours never need that much).
pub const MAX_WEBHOOK_BODY: usize = 5 * 1024 * 1024;
/// How long a trigger waits for more triggers before ticking, so a burst makes one tick.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// How long the HTTP server may take to drain its connections at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAN_STATUSES: [&str; 5] = ["InProgress", "Succeeded", "Failed", "Halted", "Paused"];
const WAVE_STATUSES: [&str; 5] = ["Pending", "InProgress", "Soaking", "Succeeded", "Failed"];

/// What one reconcile pass reports to the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickSummary {
    pub plan: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Halted` or `Paused`.
    pub plan_status: String,
    /// (wave, status) in plan order.
    pub waves: Vec<(String, String)>,
    pub steps_merged: u64,
    pub gate_failures: u64,
    /// Forge API calls made by this tick.
    pub api_calls: u64,
    /// Why the rollout is held, if it is.
    pub held: Option<String>,
}

impl TickSummary {
    /// Summarise a reconcile report.
    pub fn from_report(report: &crate::reconcile::Report) -> TickSummary {
        use crate::core::state::StepStatus;
        let st = &report.state;
        TickSummary {
            plan: st.plan.clone(),
            plan_status: format!("{:?}", st.status),
            waves: st
                .waves
                .iter()
                .map(|w| (w.name.clone(), format!("{:?}", w.status)))
                .collect(),
            steps_merged: st
                .waves
                .iter()
                .flat_map(|w| &w.steps)
                .filter(|s| matches!(s.status, StepStatus::Merged | StepStatus::Converged))
                .count() as u64,
            gate_failures: st
                .waves
                .iter()
                .flat_map(|w| &w.gate_log)
                .filter(|g| !g.ok)
                .count() as u64,
            api_calls: report.api_calls.unwrap_or(0) as u64,
            held: match &report.outcome {
                crate::reconcile::Outcome::Held(why) => Some(why.clone()),
                _ => None,
            },
        }
    }
}

/// One reconcile pass. Implementations doing blocking work (git2) should move it off the
/// async runtime, e.g. with `tokio::task::spawn_blocking`.
#[async_trait::async_trait]
pub trait Ticker: Send + Sync {
    async fn tick(&self) -> anyhow::Result<TickSummary>;
    /// One pass over every plan this service runs (plan discovery), one result each; by
    /// default the single plan of [`Ticker::tick`].
    async fn tick_all(&self) -> Vec<anyhow::Result<TickSummary>> {
        vec![self.tick().await]
    }
}

/// Where the lease election reports to the service: whether the last round went through
/// (this replica holds or follows every plan's Lease) and which plans it leads. `/readyz` is
/// ready while the rounds go through; `/metrics` shows `fleetwave_plan_leader`.
#[derive(Clone)]
pub struct LeaseReport(Arc<Shared>);

impl LeaseReport {
    pub fn report(&self, ok: bool, leading: &std::collections::BTreeMap<String, bool>) {
        *self.0.leases.lock().unwrap_or_else(|e| e.into_inner()) = Some(ok);
        for (plan, lead) in leading {
            self.0
                .metrics
                .plan_leader
                .get_or_create(&PlanLabels { plan: plan.clone() })
                .set(i64::from(*lead));
        }
    }
}

/// How the service listens and ticks.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub interval: Duration,
    /// GitHub webhook secret; `None` refuses webhooks with 404.
    pub webhook_secret: Option<String>,
    pub limits: HttpLimits,
}

/// What one client may hold of the service: slow or idle clients are cut off, so probes and
/// webhooks are answered whatever else is connected.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request's headers must arrive within this (also closes connections that say nothing).
    pub header_timeout: Duration,
    /// A whole request, body included, must be answered within this.
    pub request_timeout: Duration,
    /// Connections held at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            // Below the usual 1,024 open files, with room for Git, Kubernetes and GitHub.
            max_connections: 512,
        }
    }
}

/// Asks the service for a tick now. Bursts coalesce into one tick.
#[derive(Debug, Clone)]
pub struct Trigger(mpsc::Sender<()>);

impl Trigger {
    pub fn fire(&self) {
        // Full: a tick is already pending, which covers this event too. Closed: shutting down.
        let _ = self.0.try_send(());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlanLabels {
    plan: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlanStatusLabels {
    plan: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaveStatusLabels {
    plan: String,
    wave: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlanResultLabels {
    plan: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The service's Prometheus metrics.
struct Metrics {
    registry: Registry,
    plan_status: Family<PlanStatusLabels, Gauge>,
    wave_status: Family<WaveStatusLabels, Gauge>,
    steps_merged: Family<PlanLabels, Gauge>,
    gate_failures: Family<PlanLabels, Gauge>,
    ticks: Family<ResultLabels, Counter>,
    api_calls: Counter,
    tick_duration: Histogram,
    webhooks: Family<ResultLabels, Counter>,
    plan_ticks: Family<PlanResultLabels, Counter>,
    plan_leader: Family<PlanLabels, Gauge>,
    /// Statuses reported so far beyond the known ones, so a left status drops back to 0.
    seen: Mutex<(BTreeSet<String>, BTreeSet<String>)>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let plan_status = Family::<PlanStatusLabels, Gauge>::default();
        let wave_status = Family::<WaveStatusLabels, Gauge>::default();
        let steps_merged = Family::<PlanLabels, Gauge>::default();
        let gate_failures = Family::<PlanLabels, Gauge>::default();
        let ticks = Family::<ResultLabels, Counter>::default();
        let api_calls = Counter::default();
        let tick_duration = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        let webhooks = Family::<ResultLabels, Counter>::default();
        let plan_ticks = Family::<PlanResultLabels, Counter>::default();
        let plan_leader = Family::<PlanLabels, Gauge>::default();
        registry.register(
            "fleetwave_plan_ticks",
            "Reconcile ticks of the plan by result",
            plan_ticks.clone(),
        );
        registry.register(
            "fleetwave_plan_leader",
            "1 while this replica holds the plan's Lease (leader election)",
            plan_leader.clone(),
        );
        registry.register(
            "fleetwave_plan_status",
            "Plan status (1 for the current status)",
            plan_status.clone(),
        );
        registry.register(
            "fleetwave_wave_status",
            "Wave status (1 for the current status)",
            wave_status.clone(),
        );
        registry.register(
            "fleetwave_steps_merged",
            "Steps of the plan merged so far",
            steps_merged.clone(),
        );
        registry.register(
            "fleetwave_gate_failures",
            "Gate breaches recorded for the plan",
            gate_failures.clone(),
        );
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "fleetwave_ticks",
            "Reconcile ticks by result",
            ticks.clone(),
        );
        registry.register(
            "fleetwave_api_calls",
            "Forge API calls made by ticks",
            api_calls.clone(),
        );
        registry.register_with_unit(
            "fleetwave_tick_duration",
            "Duration of reconcile ticks",
            Unit::Seconds,
            tick_duration.clone(),
        );
        registry.register(
            "fleetwave_webhooks",
            "Webhook deliveries by result",
            webhooks.clone(),
        );
        for result in ["ok", "error", "held"] {
            let _ = ticks.get_or_create(&ResultLabels { result });
        }
        for result in ["accepted", "rejected", "ignored"] {
            let _ = webhooks.get_or_create(&ResultLabels { result });
        }
        Metrics {
            registry,
            plan_status,
            wave_status,
            steps_merged,
            gate_failures,
            ticks,
            api_calls,
            tick_duration,
            webhooks,
            plan_ticks,
            plan_leader,
            seen: Mutex::new(Default::default()),
        }
    }

    fn webhook(&self, result: &'static str) {
        self.webhooks.get_or_create(&ResultLabels { result }).inc();
    }

    fn plan_tick(&self, plan: &str, result: &'static str) {
        let plan = plan.to_string();
        self.plan_ticks
            .get_or_create(&PlanResultLabels { plan, result })
            .inc();
    }

    fn tick_result(&self, result: &'static str, took: Duration) {
        self.ticks.get_or_create(&ResultLabels { result }).inc();
        self.tick_duration.observe(took.as_secs_f64());
    }

    fn record(&self, s: &TickSummary) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (plan_seen, wave_seen) = &mut *seen;
        plan_seen.insert(s.plan_status.clone());
        for (_, status) in &s.waves {
            wave_seen.insert(status.clone());
        }
        let plan_all = PLAN_STATUSES
            .iter()
            .map(|s| s.to_string())
            .chain(plan_seen.iter().cloned())
            .collect::<BTreeSet<_>>();
        for status in plan_all {
            let on = i64::from(status == s.plan_status);
            self.plan_status
                .get_or_create(&PlanStatusLabels {
                    plan: s.plan.clone(),
                    status,
                })
                .set(on);
        }
        let wave_all = WAVE_STATUSES
            .iter()
            .map(|s| s.to_string())
            .chain(wave_seen.iter().cloned())
            .collect::<BTreeSet<_>>();
        for (wave, current) in &s.waves {
            for status in &wave_all {
                let on = i64::from(status == current);
                self.wave_status
                    .get_or_create(&WaveStatusLabels {
                        plan: s.plan.clone(),
                        wave: wave.clone(),
                        status: status.clone(),
                    })
                    .set(on);
            }
        }
        let plan = PlanLabels {
            plan: s.plan.clone(),
        };
        self.steps_merged
            .get_or_create(&plan)
            .set(i64::try_from(s.steps_merged).unwrap_or(i64::MAX));
        self.gate_failures
            .get_or_create(&plan)
            .set(i64::try_from(s.gate_failures).unwrap_or(i64::MAX));
        self.api_calls.inc_by(s.api_calls);
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// How long a webhook delivery id (and its body digest) is remembered: a replay within it
/// is answered 200 and does not tick.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(3600);
/// At most this many deliveries are remembered (the oldest are forgotten first).
const REPLAY_MEMORY: usize = 10_000;

/// What the HTTP handlers share.
struct Shared {
    metrics: Metrics,
    ready: AtomicBool,
    trigger: Trigger,
    webhook_secret: Option<String>,
    /// Delivery ids and body digests seen within [`REPLAY_WINDOW`], with when.
    seen: Mutex<std::collections::VecDeque<(Instant, String)>>,
    /// With leader election: whether the last lease round went through.
    leases: Mutex<Option<bool>>,
}

impl Shared {
    /// Whether any of `keys` was seen within the window; remembers them either way.
    fn replayed(&self, keys: &[String]) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while seen
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > REPLAY_WINDOW)
            || seen.len() > REPLAY_MEMORY
        {
            seen.pop_front();
        }
        let hit = seen.iter().any(|(_, k)| keys.contains(k));
        if !hit {
            seen.extend(keys.iter().map(|k| (now, k.clone())));
        }
        hit
    }
}

/// The service, bound but not yet running.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    interval: Duration,
    shared: Arc<Shared>,
    triggers: mpsc::Receiver<()>,
    limits: HttpLimits,
    /// The dashboard's routes and, with `--ui-listen`, the listener they answer on alone.
    ui: Option<(Router, Option<tokio::net::TcpListener>)>,
}

impl Server {
    /// Bind (port 0 allowed) and return; nothing runs until `run`.
    pub async fn bind(cfg: ServeConfig) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(1);
        Ok(Server {
            listener,
            addr,
            // A zero interval would spin; tick at most every second on the timer.
            interval: cfg.interval.max(Duration::from_secs(1)),
            shared: Arc::new(Shared {
                metrics: Metrics::new(),
                ready: AtomicBool::new(false),
                trigger: Trigger(tx),
                webhook_secret: cfg.webhook_secret.filter(|s| !s.is_empty()),
                seen: Mutex::new(Default::default()),
                leases: Mutex::new(None),
            }),
            triggers: rx,
            limits: cfg.limits,
            ui: None,
        })
    }

    /// Also answer the read-only dashboard (`crate::app::web::routes`): next to the service's
    /// routes, or on `listen` alone (bound now; port 0 allowed).
    pub async fn with_dashboard(
        mut self,
        routes: Router,
        listen: Option<SocketAddr>,
    ) -> std::io::Result<Server> {
        let listener = match listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        self.ui = Some((routes, listener));
        Ok(self)
    }

    /// Where the dashboard answers, if it does.
    pub fn ui_addr(&self) -> Option<SocketAddr> {
        match &self.ui {
            Some((_, Some(l))) => l.local_addr().ok(),
            Some((_, None)) => Some(self.addr),
            None => None,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle other event sources (e.g. Kubernetes watches) use to ask for a tick now.
    pub fn trigger(&self) -> Trigger {
        self.shared.trigger.clone()
    }

    /// The handle leader election reports through (see [`LeaseReport`]).
    pub fn lease_report(&self) -> LeaseReport {
        LeaseReport(self.shared.clone())
    }

    /// Serve HTTP and tick: at once, every `interval`, and (debounced, coalescing bursts) when
    /// triggered. Returns when `shutdown` resolves, after the tick in progress (if any).
    pub async fn run(
        self,
        ticker: Arc<dyn Ticker>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            listener,
            addr,
            interval,
            shared,
            mut triggers,
            limits,
            ui,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (http_stop_tx, mut http_stop_rx) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        let mut app = router(shared.clone(), limits.request_timeout);
        let mut ui_http = None;
        match ui {
            Some((routes, None)) => app = app.merge(bounded(routes, limits.request_timeout)),
            Some((routes, Some(listener))) => {
                let mut stop = http_stop_rx.clone();
                let routes = bounded(routes, limits.request_timeout);
                ui_http = Some(tokio::spawn(async move {
                    serve_http(listener, routes, limits, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
                }));
            }
            None => {}
        }
        let mut http = tokio::spawn(async move {
            serve_http(listener, app, limits, async move {
                let _ = http_stop_rx.wait_for(|s| *s).await;
            })
            .await
        });
        tracing::info!(%addr, interval = ?interval, "fleetwave serving");

        let ticking = tick_loop(&shared, ticker, interval, &mut triggers, stop_rx);
        // Fail fast if the HTTP server dies; otherwise tick until shutdown.
        let early = tokio::select! {
            () = ticking => None,
            res = &mut http => Some(res),
        };
        stopper.abort();
        if let Some(res) = early {
            return match res {
                Ok(Ok(())) => Err(std::io::Error::other("HTTP server stopped unexpectedly")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e)),
            };
        }
        let _ = http_stop_tx.send(true);
        if let Some(mut h) = ui_http
            && tokio::time::timeout(HTTP_DRAIN, &mut h).await.is_err()
        {
            h.abort();
        }
        match tokio::time::timeout(HTTP_DRAIN, &mut http).await {
            Ok(Ok(res)) => res?,
            Ok(Err(e)) => return Err(std::io::Error::other(e)),
            Err(_) => {
                tracing::warn!("HTTP connections did not drain in time; closing them");
                http.abort();
            }
        }
        tracing::info!("fleetwave stopped");
        Ok(())
    }
}

/// Tick at once, on the interval and on triggers, until `stop` turns true between ticks.
async fn tick_loop(
    shared: &Shared,
    ticker: Arc<dyn Ticker>,
    interval: Duration,
    triggers: &mut mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now();
    loop {
        let triggered = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(next) => false,
            Some(()) = triggers.recv() => true,
        };
        if triggered {
            // Let the burst finish, then fold whatever else arrived into this tick.
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(DEBOUNCE) => {}
            }
            while triggers.try_recv().is_ok() {}
        }
        run_tick(shared, &ticker).await;
        next = tokio::time::Instant::now() + interval;
    }
}

/// One tick, isolated in its own task so a panic is counted as an error, not fatal; with
/// several plans, one result per plan.
async fn run_tick(shared: &Shared, ticker: &Arc<dyn Ticker>) {
    let started = Instant::now();
    let t = ticker.clone();
    let res = tokio::spawn(async move { t.tick_all().await }).await;
    let took = started.elapsed();
    let m = &shared.metrics;
    let results = match res {
        Ok(results) => results,
        Err(e) => {
            tracing::error!(error = %e, "tick panicked");
            m.tick_result("error", took);
            return;
        }
    };
    for res in results {
        match res {
            Ok(summary) => {
                m.record(&summary);
                shared.ready.store(true, Ordering::Release);
                match &summary.held {
                    Some(why) => {
                        tracing::warn!(plan = %summary.plan, reason = %why, "rollout held");
                        m.tick_result("held", took);
                        m.plan_tick(&summary.plan, "held");
                    }
                    None => {
                        tracing::info!(
                            plan = %summary.plan,
                            status = %summary.plan_status,
                            took_ms = took.as_millis() as u64,
                            "tick done"
                        );
                        m.tick_result("ok", took);
                        m.plan_tick(&summary.plan, "ok");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "tick failed");
                m.tick_result("error", took);
            }
        }
    }
}

fn router(shared: Arc<Shared>, request_timeout: Duration) -> Router {
    Router::new()
        .route("/webhook", post(webhook))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(shared)
        // The body is read inside the handler: a client trickling it is cut off here.
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(request_timeout, next.run(req)).await {
                    Ok(res) => res,
                    Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
                }
            },
        ))
}

/// `routes` under the same request timeout as the service's own.
fn bounded(routes: Router, request_timeout: Duration) -> Router {
    routes.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(request_timeout, next.run(req)).await {
                Ok(res) => res,
                Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
            }
        },
    ))
}

/// Accept connections until `stop`, each under the limits: a permit per connection (over the
/// limit a connection is closed at once, so accepting never stalls), HTTP/1 with a header
/// timeout. On `stop`, open connections finish their requests and close.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // Out of file descriptors and the like: say so, and go on accepting.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = limits.max_connections,
                "connection limit reached; closing a new connection"
            );
            drop(tcp);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(tcp), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn readyz(State(sh): State<Arc<Shared>>) -> Response {
    // With leader election a follower never ticks its plans: ready while the lease rounds
    // go through (it holds or follows every Lease).
    match *sh.leases.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(true) => return (StatusCode::OK, "ready (leases held or followed)").into_response(),
        Some(false) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "lease election failing").into_response();
        }
        None => {}
    }
    if sh.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no successful tick yet").into_response()
    }
}

async fn metrics(State(sh): State<Arc<Shared>>) -> Response {
    match sh.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`,
/// compared in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The `X-Hub-Signature-256` value GitHub would send for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn webhook(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let m = &sh.metrics;
    let Some(secret) = &sh.webhook_secret else {
        m.webhook("rejected");
        return (StatusCode::NOT_FOUND, "webhooks are not configured").into_response();
    };
    let body = match axum::body::to_bytes(body, MAX_WEBHOOK_BODY).await {
        Ok(b) => b,
        Err(_) => {
            m.webhook("rejected");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or unreadable",
            )
                .into_response();
        }
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !signature.is_some_and(|sig| verify_signature(secret.as_bytes(), &body, sig)) {
        m.webhook("rejected");
        tracing::warn!(
            signed = signature.is_some(),
            "webhook rejected: bad or missing signature"
        );
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let delivery = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // GitHub gives every delivery its own id (a redelivery keeps it): one seen within the
    // window is a replay, answered 200 without a tick.
    if delivery.is_empty() {
        m.webhook("rejected");
        return (StatusCode::BAD_REQUEST, "missing X-GitHub-Delivery").into_response();
    }
    if sh.replayed(&[delivery.to_string()]) {
        m.webhook("ignored");
        tracing::warn!(event, delivery, "webhook replay ignored");
        return (StatusCode::OK, "duplicate delivery; ignored").into_response();
    }
    match event {
        "ping" => {
            m.webhook("accepted");
            tracing::info!(delivery, "webhook ping");
            (StatusCode::OK, "pong").into_response()
        }
        "pull_request" | "pull_request_review" | "push" => {
            m.webhook("accepted");
            tracing::info!(event, delivery, "webhook: tick requested");
            sh.trigger.fire();
            (StatusCode::ACCEPTED, "tick requested").into_response()
        }
        _ => {
            m.webhook("ignored");
            tracing::debug!(event, delivery, "webhook ignored");
            (StatusCode::ACCEPTED, "ignored").into_response()
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
