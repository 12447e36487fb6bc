//! Leader election with `coordination.k8s.io/v1` Leases against the fake Kubernetes API: a
//! Lease as the Kubernetes project serializes it is read and taken over once expired, two
//! replicas spread the plans, and when one stops the other takes its plans over once their
//! Leases expire. Optimistic concurrency: a write at a stale resourceVersion is refused (409).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::fake_kube::FakeKube;
use fleetwave::adapters::lease::{Elector, LeaseConfig, Role, plan_lease};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};

const NS: &str = "fleetwave-system";

fn elector(fake: &FakeKube, id: &str, duration: Duration) -> Elector {
    Elector::new(
        fake.client(),
        LeaseConfig {
            namespace: NS.into(),
            identity: id.into(),
            duration,
        },
    )
}

fn plans(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn led(roles: &BTreeMap<String, Role>) -> Vec<String> {
    roles
        .iter()
        .filter(|(_, r)| **r == Role::Leader)
        .map(|(p, _)| p.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_serialized_lease_is_read_and_taken_over_once_expired() {
    let fake = FakeKube::start();
    let text = std::fs::read_to_string("fixtures/real/kubernetes/lease-v1.json").expect("fixture");
    let mut lease: serde_json::Value = serde_json::from_str(&text).expect("json");
    lease["metadata"]["name"] = plan_lease("a").into();
    lease["metadata"]["namespace"] = NS.into();
    fake.put_lease(lease);
    let before = Utc::now();
    let roles = elector(&fake, "r1", Duration::from_secs(15))
        .round(&plans(&["a"]), Utc::now())
        .await
        .expect("round");
    assert_eq!(roles["a"], Role::Leader);
    let got = fake.lease(NS, &plan_lease("a")).expect("lease");
    let spec = &got["spec"];
    assert_eq!(spec["holderIdentity"], "r1");
    assert_eq!(spec["leaseTransitions"], 6, "{got}");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    let acquired = chrono::DateTime::parse_from_rfc3339(spec["acquireTime"].as_str().unwrap())
        .expect("acquireTime is RFC 3339");
    assert!(acquired >= before - chrono::Duration::seconds(1), "{got}");
    assert_eq!(spec["renewTime"], spec["acquireTime"]);
    // What fleetwave does not manage is kept.
    assert_eq!(got["metadata"]["labels"]["labelsKey"], "labelsValue");
    assert_eq!(got["metadata"]["uid"], "uidValue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_is_followed_and_renewed_by_its_holder() {
    let fake = FakeKube::start();
    let (r1, r2) = (
        elector(&fake, "r1", Duration::from_secs(30)),
        elector(&fake, "r2", Duration::from_secs(30)),
    );
    let p = plans(&["a"]);
    assert_eq!(r1.round(&p, Utc::now()).await.unwrap()["a"], Role::Leader);
    let first = fake.lease(NS, &plan_lease("a")).unwrap();
    // One plan, two replicas: a share of one each; r2 follows r1.
    assert_eq!(
        r2.round(&p, Utc::now()).await.unwrap()["a"],
        Role::Follower(Some("r1".into()))
    );
    assert_eq!(r1.round(&p, Utc::now()).await.unwrap()["a"], Role::Leader);
    let renewed = fake.lease(NS, &plan_lease("a")).unwrap();
    assert_eq!(renewed["spec"]["leaseTransitions"], 0);
    assert_eq!(renewed["spec"]["acquireTime"], first["spec"]["acquireTime"]);
    assert_ne!(
        renewed["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_plans_and_a_stopped_replicas_plans_are_taken_over_within_the_lease() {
    let fake = FakeKube::start();
    let duration = Duration::from_secs(2);
    let (r1, r2) = (
        elector(&fake, "r1", duration),
        elector(&fake, "r2", duration),
    );
    let p = plans(&["a", "b", "c", "d"]);
    // r1 alone takes every plan; once r2 shows up, r1 keeps its share and r2 takes the rest.
    assert_eq!(led(&r1.round(&p, Utc::now()).await.unwrap()).len(), 4);
    assert!(led(&r2.round(&p, Utc::now()).await.unwrap()).is_empty());
    let one = led(&r1.round(&p, Utc::now()).await.unwrap());
    let two = led(&r2.round(&p, Utc::now()).await.unwrap());
    assert_eq!((one.len(), two.len()), (2, 2), "r1 {one:?}, r2 {two:?}");
    assert!(one.iter().all(|x| !two.contains(x)));
    // Both renew: nothing moves.
    assert_eq!(led(&r1.round(&p, Utc::now()).await.unwrap()), one);
    assert_eq!(led(&r2.round(&p, Utc::now()).await.unwrap()), two);

    // r1 stops renewing (killed). r2 follows its plans until their Leases expire, then
    // takes them: within the lease duration of r1's last renewal, plus one round.
    let stopped = Instant::now();
    let roles = r2.round(&p, Utc::now()).await.unwrap();
    assert_eq!(roles[&one[0]], Role::Follower(Some("r1".into())));
    let deadline = stopped + duration + Duration::from_secs(3);
    let took = loop {
        let roles = r2.round(&p, Utc::now()).await.unwrap();
        if led(&roles).len() == 4 {
            break stopped.elapsed();
        }
        assert!(Instant::now() < deadline, "r2 did not take over: {roles:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        took >= duration - Duration::from_millis(500),
        "taken over before the lease expired ({took:?})"
    );
    for plan in &one {
        let l = fake.lease(NS, &plan_lease(plan)).unwrap();
        assert_eq!(l["spec"]["holderIdentity"], "r2");
        assert_eq!(l["spec"]["leaseTransitions"], 1, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_at_a_stale_resource_version_is_refused_and_the_elector_follows() {
    let fake = FakeKube::start();
    let r1 = elector(&fake, "r1", Duration::from_secs(30));
    r1.round(&plans(&["a"]), Utc::now()).await.unwrap();
    let api: Api<Lease> = Api::namespaced(fake.client(), NS);
    let mut stale = api.get(&plan_lease("a")).await.expect("get");
    // r1 renews, so what `stale` carries is no longer the stored resourceVersion.
    r1.round(&plans(&["a"]), Utc::now()).await.unwrap();
    stale.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    let err = api
        .replace(&plan_lease("a"), &PostParams::default(), &stale)
        .await
        .expect_err("a stale write must be refused");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err}"
    );
    assert_eq!(fake.lease_conflicts(), 1);
    assert_eq!(
        fake.lease(NS, &plan_lease("a")).unwrap()["spec"]["holderIdentity"],
        "r1"
    );
}

/// A `fleetwave serve` child process; killed (SIGKILL, no goodbye) when dropped.
struct Serve {
    child: std::process::Child,
    addr: String,
}

impl Serve {
    fn start(
        remote: &std::path::Path,
        cache: &std::path::Path,
        kubeconfig: &std::path::Path,
        id: &str,
    ) -> Serve {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(["serve", "--clusters", "kube", "--listen", "127.0.0.1:0"])
            .args(["--interval", "3600", "--lease-duration", "2s"])
            .args(["--lease-namespace", NS, "--identity", id])
            .arg("--remote")
            .arg(remote)
            .arg("--cache")
            .arg(cache)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("POD_NAME")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("serve printed its address").unwrap();
            if let Some(a) = line.strip_prefix("fleetwave serve: listening on ") {
                break a.to_string();
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Serve { child, addr }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.addr);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            match reqwest::get(url).await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which replica holds each plan's Lease (live or not).
fn holders(fake: &FakeKube, plans: &[&str]) -> Vec<Option<String>> {
    plans
        .iter()
        .map(|p| {
            fake.lease(NS, &plan_lease(p))
                .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        })
        .collect()
}

/// Poll `cond` until it holds or `within` passes (no fixed sleeps).
fn poll(within: Duration, what: &str, cond: &mut dyn FnMut() -> Option<String>) {
    let deadline = Instant::now() + within;
    loop {
        let seen = cond();
        match seen {
            None => return,
            Some(s) if Instant::now() >= deadline => panic!("{what}: {s}"),
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn two_serve_processes_spread_the_plans_and_one_takes_over_when_the_other_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = fleetwave::demo::example_files("gitops-base").unwrap();
    files.insert(
        "plans/minor.yaml".into(),
        std::fs::read("fixtures/plans/k8s-minor.yaml").unwrap(),
    );
    let start = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 23, 8, 0, 0).unwrap();
    let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, start).unwrap();
    let fake = FakeKube::start();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).unwrap();
    let plans = ["gitops-base-2026-02", "k8s-1-33-upgrade"];

    let a = Serve::start(
        &remote,
        &dir.path().join("cache-a"),
        &kubeconfig,
        "replica-a",
    );
    let b = Serve::start(
        &remote,
        &dir.path().join("cache-b"),
        &kubeconfig,
        "replica-b",
    );
    // Each replica ends up with one plan.
    poll(
        Duration::from_secs(30),
        "the plans spread over both replicas",
        &mut || {
            let h = holders(&fake, &plans);
            let spread =
                h.contains(&Some("replica-a".into())) && h.contains(&Some("replica-b".into()));
            (!spread).then(|| format!("{h:?}"))
        },
    );
    for s in [&a, &b] {
        poll(
            Duration::from_secs(10),
            "ready while holding or following",
            &mut || {
                let (code, body) = s.get("/readyz");
                (code != 200).then(|| format!("{code} {body}"))
            },
        );
    }
    let (_, metrics) = b.get("/metrics");
    let led: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("fleetwave_plan_leader{") && l.ends_with(" 1"))
        .collect();
    assert_eq!(led.len(), 1, "{metrics}");

    // Kill replica a without a chance to release: b takes its plan once the Lease expires.
    let held_by_a = plans
        .iter()
        .map(|p| (*p, fake.lease(NS, &plan_lease(p)).unwrap()))
        .find(|(_, l)| l["spec"]["holderIdentity"] == "replica-a")
        .expect("a holds a plan");
    let killed = Instant::now();
    drop(a);
    poll(Duration::from_secs(15), "replica b takes over", &mut || {
        let h = holders(&fake, &plans);
        (h != [Some("replica-b".to_string()), Some("replica-b".to_string())])
            .then(|| format!("{h:?}"))
    });
    let took = killed.elapsed();
    // The lease lasts 2 s and is renewed every third of it: expiry plus one round.
    assert!(took < Duration::from_secs(2 + 2), "took {took:?}");
    poll(
        Duration::from_secs(10),
        "b's metrics show both plans led",
        &mut || {
            let (_, metrics) = b.get("/metrics");
            let n = metrics
                .lines()
                .filter(|l| l.starts_with("fleetwave_plan_leader{") && l.ends_with(" 1"))
                .count();
            (n != 2).then(|| metrics.clone())
        },
    );
    // The plan a held changed holder: one more transition, a new acquireTime.
    let before = &held_by_a.1;
    let after = fake.lease(NS, &plan_lease(held_by_a.0)).unwrap();
    assert_eq!(
        after["spec"]["leaseTransitions"].as_i64().unwrap(),
        before["spec"]["leaseTransitions"].as_i64().unwrap() + 1,
        "{before}\n{after}"
    );
    assert_ne!(after["spec"]["acquireTime"], before["spec"]["acquireTime"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_of_a_replica_gone_for_ten_durations_is_deleted_and_a_recent_one_kept() {
    let fake = FakeKube::start();
    let d = Duration::from_secs(2);
    let (old, recent) = (elector(&fake, "old", d), elector(&fake, "recent", d));
    let t0 = Utc::now();
    recent
        .round(&plans(&["a"]), t0 - chrono::Duration::seconds(5))
        .await
        .unwrap();
    old.round(&plans(&["a"]), t0 - chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert!(fake.lease(NS, "fleetwave-replica-old").is_some());
    assert!(fake.lease(NS, "fleetwave-replica-recent").is_some());
    elector(&fake, "r1", d)
        .round(&plans(&["a"]), t0)
        .await
        .unwrap();
    // 60 s unrenewed at 2 s a lease: gone. 5 s: expired but kept (it may come back).
    assert!(fake.lease(NS, "fleetwave-replica-old").is_none());
    assert!(fake.lease(NS, "fleetwave-replica-recent").is_some());
    // Plan Leases are never deleted: they carry the plan's history of holders.
    assert!(fake.lease(NS, &plan_lease("a")).is_some());
}
