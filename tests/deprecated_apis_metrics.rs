//! The `deprecatedApis` gate's data: the fake API server serves `/metrics` in the Prometheus
//! text exposition format as a kube-apiserver does; `gates::parse_deprecated_apis` reads
//! `apiserver_requested_deprecated_apis` from it and tells which requested APIs a target minor
//! no longer serves; `KubeSource` polls each per-cluster context's `/metrics` when asked and
//! reports what it read (the hold itself is `core::decide`'s, unit-tested there).

mod common;

use common::fake_kube::FakeKube;
use fleetwave::gates::{parse_deprecated_apis, removed_apis_requested};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_api_requests_are_read_from_the_api_servers_metrics() {
    let fake = FakeKube::start();
    fake.set_deprecated_requests(&[
        ("policy", "v1beta1", "podsecuritypolicies", "1.25"),
        (
            "flowcontrol.apiserver.k8s.io",
            "v1beta3",
            "flowschemas",
            "1.32",
        ),
    ]);
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = fake.client().request_text(req).await.expect("GET /metrics");
    assert!(
        text.contains("# TYPE apiserver_requested_deprecated_apis gauge"),
        "{text}"
    );
    let apis = parse_deprecated_apis(&text).expect("parsed");
    let shown: Vec<String> = apis.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in 1.32)",
            "policy/v1beta1 podsecuritypolicies (removed in 1.25)",
        ]
    );
    // To 1.31: only what 1.25 removed; to 1.32: both; to 1.24: nothing yet.
    let at = |m: u64| {
        removed_apis_requested(&apis, (1, m))
            .iter()
            .map(|a| a.resource.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(at(24), Vec::<String>::new());
    assert_eq!(at(31), ["podsecuritypolicies"]);
    assert_eq!(at(32), ["flowschemas", "podsecuritypolicies"]);
    // Nothing requested: the family is there with no series.
    fake.set_deprecated_requests(&[]);
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = fake.client().request_text(req).await.unwrap();
    assert_eq!(parse_deprecated_apis(&text).unwrap(), []);
}

#[test]
fn the_exposition_format_is_read_line_by_line() {
    // Escapes, a zero sample, a timestamp, another family sharing the prefix, and a broken
    // series of this family (refused, not skipped).
    let text = "# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.\n\
        # TYPE apiserver_requested_deprecated_apis gauge\n\
        apiserver_requested_deprecated_apis{group=\"extensions\",removed_release=\"1.22\",resource=\"ingresses\",subresource=\"\",version=\"v1beta1\"} 1\n\
        apiserver_requested_deprecated_apis{group=\"batch\",removed_release=\"1.25\",resource=\"cronjobs\",subresource=\"status\",version=\"v1beta1\"} 0\n\
        apiserver_requested_deprecated_apis{group=\"a\\\"b\",removed_release=\"1.29\",resource=\"x\",subresource=\"\",version=\"v1\"} 1 1700000000000\n\
        apiserver_requested_deprecated_apis_other{group=\"z\"} 1\n";
    let apis = parse_deprecated_apis(text).unwrap();
    let shown: Vec<String> = apis.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "a\"b/v1 x (removed in 1.29)",
            "extensions/v1beta1 ingresses (removed in 1.22)"
        ]
    );
    let broken = "apiserver_requested_deprecated_apis{group=\"extensions\",version=\"v1beta1} 1\n";
    let err = parse_deprecated_apis(broken).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(err.to_string().starts_with("/metrics line 1: "), "{err}");
}

async fn observe(
    src: &fleetwave::adapters::cluster::kube::KubeSource,
) -> fleetwave::cluster::ClusterObservation {
    use fleetwave::cluster::ClusterSource;
    src.observe(&["a".to_string()], chrono::Utc::now())
        .await
        .expect("observe")
        .remove("a")
        .expect("a is observed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_cluster_source_reads_deprecated_api_requests_only_when_asked() {
    use fleetwave::adapters::cluster::kube::{KubeSource, Targets};
    use std::time::{Duration, Instant};
    let fake = FakeKube::start();
    fake.set_deprecated_requests(&[("policy", "v1beta1", "podsecuritypolicies", "1.25")]);
    let start = |every: Option<Duration>| {
        KubeSource::start_with(Targets {
            spokes: vec![("a".into(), fake.client())],
            deprecated_apis_every: every,
            ..Default::default()
        })
    };
    let asked = start(Some(Duration::from_millis(50))).await.unwrap();
    asked.ready(Duration::from_secs(20)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let apis = loop {
        if let Some(a) = observe(&asked).await.deprecated_apis {
            break a;
        }
        assert!(Instant::now() < deadline, "no deprecated-API reading");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let shown: Vec<String> = apis.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["policy/v1beta1 podsecuritypolicies (removed in 1.25)"]
    );
    // The clients stop asking: the next reading says so.
    fake.set_deprecated_requests(&[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while observe(&asked).await.deprecated_apis != Some(vec![]) {
        assert!(Instant::now() < deadline, "the empty reading never came");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(asked);
    // Not asked (no deprecatedApis gate): `/metrics` is never read, and there is no data.
    let not_asked = start(None).await.unwrap();
    not_asked.ready(Duration::from_secs(20)).await.unwrap();
    assert_eq!(observe(&not_asked).await.deprecated_apis, None);
}
