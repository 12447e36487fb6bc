//! Remote gates over real HTTP on 127.0.0.1: a fake Prometheus and health endpoint whose
//! answers each test sets, and what the gates make of them (including the failures that must
//! hold a rollout: errors, bad bodies, dead ports, silence).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fleetwave::adapters::gates::{MAX_IN_FLIGHT, Remote};
use fleetwave::cluster::GateResult;
use fleetwave::plan::Gate;
use serde_json::{Value, json};

const CLUSTER: &str = "prod-eu-1";

/// What the fake answers, and what it saw.
struct Fake {
    /// The `alerts` list of `/api/v1/alerts`.
    alerts: Value,
    /// The `data` of `/api/v1/query`.
    query: Value,
    /// Status and raw body for both Prometheus endpoints, replacing the above.
    prom_override: Option<(u16, String)>,
    health_status: u16,
    health_body: String,
    /// Every request: path, and the decoded `query` parameter if any.
    seen: Vec<(String, Option<String>)>,
    /// How long each request is held, to make concurrency visible.
    delay: Duration,
    in_flight: usize,
    max_in_flight: usize,
}

type Shared = Arc<Mutex<Fake>>;

struct Server {
    addr: SocketAddr,
    state: Shared,
}

impl Server {
    async fn start() -> Server {
        let state = Arc::new(Mutex::new(Fake {
            alerts: json!([]),
            query: json!({"resultType": "vector", "result": []}),
            prom_override: None,
            health_status: 200,
            health_body: "ok".into(),
            seen: Vec::new(),
            delay: Duration::ZERO,
            in_flight: 0,
            max_in_flight: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, f: impl FnOnce(&mut Fake)) {
        f(&mut self.state.lock().unwrap());
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().seen.clone()
    }
}

async fn handle(
    State(state): State<Shared>,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let path = uri.path().to_string();
    let delay = {
        let mut s = state.lock().unwrap();
        s.seen.push((path.clone(), params.get("query").cloned()));
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.delay
    };
    if path.contains("/hang") {
        // Never answers: the client's timeout must end the wait.
        std::future::pending::<()>().await;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap();
    s.in_flight -= 1;
    let prometheus = path.ends_with("/api/v1/alerts") || path.ends_with("/api/v1/query");
    if let (true, Some((status, body))) = (prometheus, &s.prom_override) {
        return (StatusCode::from_u16(*status).unwrap(), body.clone()).into_response();
    }
    if path.ends_with("/api/v1/alerts") {
        let body = json!({"status": "success", "data": {"alerts": s.alerts}});
        return axum::Json(body).into_response();
    }
    if path.ends_with("/api/v1/query") {
        return axum::Json(json!({"status": "success", "data": s.query})).into_response();
    }
    if path.ends_with("/health") {
        let status = StatusCode::from_u16(s.health_status).unwrap();
        return (status, s.health_body.clone()).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

fn remote() -> Remote {
    Remote::new(Duration::from_secs(10)).unwrap()
}

fn alerts_gate(url: String, matchers: &[(&str, &str)]) -> Gate {
    Gate::Prometheus {
        url,
        alerts: matchers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        query: None,
        threshold: None,
    }
}

fn query_gate(url: String, query: &str, threshold: Option<f64>) -> Gate {
    Gate::Prometheus {
        url,
        alerts: BTreeMap::new(),
        query: Some(query.into()),
        threshold,
    }
}

fn http_gate(url: String, status: Option<u16>, field: Option<&str>, equals: Option<&str>) -> Gate {
    Gate::Http {
        url,
        expect_status: status,
        json_field: field.map(str::to_string),
        equals: equals.map(str::to_string),
    }
}

fn alert(name: &str, state: &str, labels: &[(&str, &str)]) -> Value {
    let mut l: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    l.insert("alertname".into(), json!(name));
    json!({
        "labels": l,
        "annotations": {"summary": "something"},
        "state": state,
        "activeAt": "2026-01-05T09:00:00Z",
        "value": "1e+00",
    })
}

async fn eval(gate: &Gate) -> GateResult {
    remote().evaluate(gate, CLUSTER).await.unwrap()
}

#[tokio::test]
async fn no_alerts_passes() {
    let s = Server::start().await;
    let r = eval(&alerts_gate(s.url("/"), &[])).await;
    assert_eq!(r.gate, "prometheus");
    assert!(r.ok, "{}", r.reason);
    assert_eq!(r.reason, "no firing alerts matching severity=critical");
    assert_eq!(s.seen(), [("/api/v1/alerts".to_string(), None)]);
}

#[tokio::test]
async fn firing_critical_alert_fails_with_its_name() {
    let s = Server::start().await;
    s.set(|f| {
        f.alerts = json!([alert(
            "KubePodCrashLooping",
            "firing",
            &[("severity", "critical")]
        )])
    });
    // The base URL may or may not end with "/".
    let r = eval(&alerts_gate(s.url(""), &[])).await;
    assert!(!r.ok);
    assert_eq!(
        r.reason,
        "alert KubePodCrashLooping firing (severity=critical)"
    );
}

#[tokio::test]
async fn pending_and_warning_alerts_pass_default_matchers() {
    let s = Server::start().await;
    s.set(|f| {
        f.alerts = json!([
            alert("Pending", "pending", &[("severity", "critical")]),
            alert("Warn", "firing", &[("severity", "warning")]),
        ])
    });
    let r = eval(&alerts_gate(s.url("/"), &[])).await;
    assert!(r.ok, "{}", r.reason);
}

#[tokio::test]
async fn custom_matchers_with_regex() {
    let s = Server::start().await;
    s.set(|f| {
        f.alerts = json!([
            alert(
                "KubeNodeNotReady",
                "firing",
                &[("severity", "page"), ("team", "infra")]
            ),
            alert(
                "KubeNodeNotReady",
                "firing",
                &[("severity", "page"), ("team", "apps")]
            ),
        ])
    });
    let infra = [("severity", "=~critical|page"), ("team", "infra")];
    let r = eval(&alerts_gate(s.url("/"), &infra)).await;
    assert!(!r.ok);
    assert_eq!(
        r.reason,
        "alert KubeNodeNotReady firing (severity=page, team=infra)"
    );

    // Anchored: "=~crit" does not match "critical" or "page".
    let r = eval(&alerts_gate(s.url("/"), &[("severity", "=~crit")])).await;
    assert!(r.ok, "{}", r.reason);
    assert_eq!(r.reason, "no firing alerts matching severity=~crit");

    let r = eval(&alerts_gate(s.url("/"), &[("alertname", "=~Kube.*")])).await;
    assert!(!r.ok);
    assert!(r.reason.ends_with(" and 1 more"), "{}", r.reason);

    let r = eval(&alerts_gate(s.url("/"), &[("severity", "=~(")])).await;
    assert!(!r.ok);
    assert!(r.reason.contains("not a valid regex"), "{}", r.reason);
}

#[tokio::test]
async fn shared_prometheus_ignores_other_clusters_alerts() {
    let s = Server::start().await;
    s.set(|f| {
        f.alerts = json!([alert(
            "Down",
            "firing",
            &[("severity", "critical"), ("cluster", "prod-us-1")]
        )])
    });
    let gate = alerts_gate(s.url("/"), &[]);
    let r = eval(&gate).await;
    assert!(r.ok, "{}", r.reason);
    let theirs = remote().evaluate(&gate, "prod-us-1").await.unwrap();
    assert!(!theirs.ok);
    assert_eq!(
        theirs.reason,
        "alert Down firing (severity=critical, cluster=prod-us-1)"
    );

    // Naming the cluster in the matchers replaces the scoping.
    let r = eval(&alerts_gate(
        s.url("/"),
        &[("severity", "critical"), ("cluster", "=~prod-.*")],
    ))
    .await;
    assert!(!r.ok, "{}", r.reason);
}

#[tokio::test]
async fn cluster_templating_reaches_the_server() {
    let s = Server::start().await;
    s.set(|f| {
        f.alerts = json!([alert(
            "Down",
            "firing",
            &[("severity", "critical"), ("cluster", "elsewhere")]
        )])
    });
    // A per-cluster URL: the Prometheus is this cluster's, whatever its cluster labels say.
    let r = eval(&alerts_gate(s.url("/{cluster}/"), &[])).await;
    assert!(!r.ok, "{}", r.reason);
    let q = query_gate(
        s.url("/"),
        r#"sum(rate(errors{cluster="{cluster}"}[5m]))"#,
        None,
    );
    let r = eval(&q).await;
    assert!(r.ok, "{}", r.reason);
    assert_eq!(
        s.seen(),
        [
            ("/prod-eu-1/api/v1/alerts".to_string(), None),
            (
                "/api/v1/query".to_string(),
                Some(r#"sum(rate(errors{cluster="prod-eu-1"}[5m]))"#.to_string())
            ),
        ]
    );
}

#[tokio::test]
async fn query_mode_compares_samples_with_the_threshold() {
    let s = Server::start().await;
    let gate = query_gate(s.url("/"), "error_ratio", Some(0.05));

    let r = eval(&gate).await;
    assert!(r.ok);
    assert_eq!(r.reason, "query returned no samples");

    s.set(|f| {
        f.query = json!({"resultType": "vector", "result": [
            {"metric": {"job": "api"}, "value": [1767603600.0, "0.01"]},
            {"metric": {"job": "web"}, "value": [1767603600.0, "0.07"]},
        ]})
    });
    let r = eval(&gate).await;
    assert!(!r.ok);
    assert!(
        r.reason.starts_with("query max 0.07 > threshold 0.05"),
        "{}",
        r.reason
    );
    assert!(r.reason.contains(r#"job="web""#), "{}", r.reason);

    let lenient = query_gate(s.url("/"), "error_ratio", Some(0.1));
    let r = eval(&lenient).await;
    assert!(r.ok, "{}", r.reason);

    // No threshold: any value above 0 fails.
    s.set(|f| f.query = json!({"resultType": "scalar", "result": [1767603600.0, "1"]}));
    let r = eval(&query_gate(s.url("/"), "count(bad)", None)).await;
    assert!(!r.ok);
    assert_eq!(r.reason, "query max 1 > threshold 0");

    s.set(|f| f.query = json!({"resultType": "scalar", "result": [1767603600.0, "NaN"]}));
    let r = eval(&gate).await;
    assert!(!r.ok);
    assert!(r.reason.contains("NaN"), "{}", r.reason);
}

#[tokio::test]
async fn prometheus_errors_fail_with_the_reason() {
    let s = Server::start().await;
    s.set(|f| {
        let body = r#"{"status":"error","errorType":"unavailable","error":"tsdb not ready"}"#;
        f.prom_override = Some((503, body.into()));
    });
    let r = eval(&alerts_gate(s.url("/"), &[])).await;
    assert!(!r.ok);
    let url = s.url("/api/v1/alerts");
    assert_eq!(r.reason, format!("{url} answered HTTP 503: tsdb not ready"));

    s.set(|f| f.prom_override = Some((200, "<html>login</html>".into())));
    let r = eval(&query_gate(s.url("/"), "up", None)).await;
    assert!(!r.ok);
    assert!(
        r.reason.contains("not a Prometheus API response"),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("/api/v1/query"), "{}", r.reason);

    s.set(|f| {
        let body = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        f.prom_override = Some((200, body.into()));
    });
    let r = eval(&query_gate(s.url("/"), "up{", None)).await;
    assert!(!r.ok);
    assert!(r.reason.contains("parse error"), "{}", r.reason);
}

#[tokio::test]
async fn reasons_hide_credentials_and_query_strings() {
    let s = Server::start().await;
    s.set(|f| f.prom_override = Some((500, String::new())));
    let url = format!("http://admin:s3cret@{}/?token=t0ken", s.addr);
    let r = eval(&alerts_gate(url, &[])).await;
    assert!(!r.ok);
    assert!(
        !r.reason.contains("s3cret") && !r.reason.contains("t0ken"),
        "{}",
        r.reason
    );
    assert!(!r.reason.contains("admin"), "{}", r.reason);
    assert_eq!(
        r.reason,
        format!("http://{}/api/v1/alerts?… answered HTTP 500", s.addr)
    );
}

#[tokio::test]
async fn connection_refused_fails() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = eval(&alerts_gate(format!("http://{dead}/"), &[])).await;
    assert!(!r.ok);
    assert!(
        r.reason
            .starts_with(&format!("cannot reach http://{dead}/api/v1/alerts: ")),
        "{}",
        r.reason
    );
    let r = eval(&http_gate(
        format!("http://{dead}/health"),
        None,
        None,
        None,
    ))
    .await;
    assert!(!r.ok);
    assert!(r.reason.starts_with("cannot reach"), "{}", r.reason);
}

#[tokio::test]
async fn silence_times_out_and_fails() {
    let s = Server::start().await;
    let remote = Remote::new(Duration::from_millis(200)).unwrap();
    for gate in [
        alerts_gate(s.url("/hang/"), &[]),
        http_gate(s.url("/hang/health"), None, None, None),
    ] {
        let r = tokio::time::timeout(Duration::from_secs(10), remote.evaluate(&gate, CLUSTER))
            .await
            .expect("the gate must give up by itself")
            .unwrap();
        assert!(!r.ok);
        assert!(
            r.reason.starts_with("no answer from http://"),
            "{}",
            r.reason
        );
        assert!(r.reason.ends_with(" within 200ms"), "{}", r.reason);
    }
}

#[tokio::test]
async fn http_gate_checks_status() {
    let s = Server::start().await;
    let r = eval(&http_gate(s.url("/health"), None, None, None)).await;
    assert_eq!(r.gate, "http");
    assert!(r.ok, "{}", r.reason);
    assert_eq!(r.reason, format!("{} answered HTTP 200", s.url("/health")));

    s.set(|f| {
        f.health_status = 503;
        f.health_body = "draining".into();
    });
    let r = eval(&http_gate(s.url("/health"), None, None, None)).await;
    assert!(!r.ok);
    assert_eq!(
        r.reason,
        format!(
            "{} answered HTTP 503, expected 2xx: draining",
            s.url("/health")
        )
    );
    let r = eval(&http_gate(s.url("/health"), Some(503), None, None)).await;
    assert!(r.ok, "{}", r.reason);
    let r = eval(&http_gate(s.url("/health"), Some(204), None, None)).await;
    assert!(!r.ok);
    assert!(r.reason.contains("HTTP 503, expected 204"), "{}", r.reason);
}

#[tokio::test]
async fn http_gate_checks_json_fields() {
    let s = Server::start().await;
    s.set(|f| f.health_body = r#"{"status":{"phase":"Ready","replicas":3,"ok":true}}"#.into());
    let url = s.url("/{cluster}/health");
    for (field, equals) in [
        ("status.phase", "Ready"),
        ("/status/phase", "Ready"),
        ("status.replicas", "3"),
        ("status.ok", "true"),
    ] {
        let r = eval(&http_gate(url.clone(), None, Some(field), Some(equals))).await;
        assert!(r.ok, "{field}: {}", r.reason);
    }
    let r = eval(&http_gate(
        url.clone(),
        None,
        Some("status.phase"),
        Some("Degraded"),
    ))
    .await;
    assert!(!r.ok);
    assert!(
        r.reason
            .ends_with(r#"status.phase is "Ready", expected "Degraded""#),
        "{}",
        r.reason
    );
    let r = eval(&http_gate(
        url.clone(),
        None,
        Some("status.missing"),
        Some("x"),
    ))
    .await;
    assert!(!r.ok);
    assert!(
        r.reason.ends_with("without field status.missing"),
        "{}",
        r.reason
    );
    assert!(s.seen().iter().all(|(p, _)| p == "/prod-eu-1/health"));

    s.set(|f| f.health_body = "not json".into());
    let r = eval(&http_gate(url, None, Some("status.phase"), Some("Ready"))).await;
    assert!(!r.ok);
    assert!(r.reason.contains("not JSON"), "{}", r.reason);
}

#[tokio::test]
async fn local_gates_are_not_remote() {
    let r = remote();
    assert!(r.evaluate(&Gate::Nodes {}, CLUSTER).await.is_none());
    assert!(
        r.evaluate(&Gate::PodRestarts { threshold: 1 }, CLUSTER)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn evaluate_all_covers_every_cluster_with_bounded_concurrency() {
    let s = Server::start().await;
    s.set(|f| {
        f.delay = Duration::from_millis(20);
        f.alerts = json!([alert(
            "Down",
            "firing",
            &[("severity", "critical"), ("cluster", "c-7")]
        )]);
    });
    let gates = vec![
        Gate::Nodes {},
        alerts_gate(s.url("/"), &[]),
        query_gate(s.url("/"), "bad", None),
        // Each cluster's own endpoint.
        http_gate(s.url("/{cluster}/health"), None, None, None),
    ];
    let mut jobs: Vec<(String, Vec<Gate>)> =
        (0..40).map(|i| (format!("c-{i}"), gates.clone())).collect();
    jobs.push(("local-only".into(), vec![Gate::Nodes {}]));
    let all = remote().evaluate_all(&jobs).await;

    assert_eq!(all.len(), 41);
    assert_eq!(all["local-only"], []);
    for i in 0..40 {
        let c = format!("c-{i}");
        let names: Vec<&str> = all[&c].iter().map(|r| r.gate.as_str()).collect();
        assert_eq!(names, ["prometheus", "prometheus#2", "http"], "{c}");
        let failed: Vec<&str> = all[&c]
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.gate.as_str())
            .collect();
        let expected: &[&str] = if i == 7 { &["prometheus"] } else { &[] };
        assert_eq!(failed, expected, "{c}: {:?}", all[&c]);
    }
    let (requests, max) = {
        let f = s.state.lock().unwrap();
        (f.seen.len(), f.max_in_flight)
    };
    // The Prometheus gates name no `{cluster}`: one Prometheus for the fleet, asked once per
    // evaluation (alerts and query), while each cluster's HTTP endpoint is its own request.
    let seen = s.seen();
    assert_eq!(
        seen.iter().filter(|(p, _)| p.ends_with("/alerts")).count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|(p, _)| p.ends_with("/query")).count(),
        1,
        "{seen:?}"
    );
    assert_eq!(requests, 42);
    assert!(max <= MAX_IN_FLIGHT, "{max} requests in flight");
    assert!(max > 1, "gates were evaluated one at a time");
}

#[tokio::test]
async fn a_shared_endpoint_is_asked_once_per_evaluation() {
    let s = Server::start().await;
    let gates = vec![http_gate(s.url("/health"), Some(200), None, None)];
    let jobs: Vec<(String, Vec<Gate>)> =
        (0..25).map(|i| (format!("c-{i}"), gates.clone())).collect();
    let all = remote().evaluate_all(&jobs).await;
    assert!(all.values().all(|r| r.len() == 1 && r[0].ok), "{all:?}");
    assert_eq!(s.seen().len(), 1, "{:?}", s.seen());
    // A new evaluation (the next tick) asks again.
    s.set(|f| f.health_status = 503);
    let all = remote().evaluate_all(&jobs).await;
    assert!(all.values().all(|r| !r[0].ok), "{all:?}");
    assert_eq!(s.seen().len(), 2);
}
