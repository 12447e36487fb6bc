//! Drain blockers (issue 17, §5): each per-cluster context's PodDisruptionBudgets are watched;
//! one that allows no disruption over expected pods holds a step that raises that cluster's
//! workers (or the whole cluster) before merge, and `status` names it. Against fake
//! Kubernetes API servers: one watched directly through `KubeSource`, and whole ticks of the
//! binary (`reconcile --once --clusters kube --cluster-context`, local forge).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use common::fake_kube::{FakeKube, capi_cluster, kcp, kustomization, node, pdb, pod};
use fleetwave::adapters::cluster::kube::{KubeSource, Targets};
use fleetwave::cluster::{ClusterObservation, ClusterSource};
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::{PlanState, StepStatus};
use serde_json::{Value, json};

const DEADLINE: StdDuration = StdDuration::from_secs(20);

async fn observe_until(
    src: &KubeSource,
    clusters: &[&str],
    done: impl Fn(&BTreeMap<String, ClusterObservation>) -> bool,
) -> BTreeMap<String, ClusterObservation> {
    let names: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
    let start = Instant::now();
    loop {
        let obs = src.observe(&names, Utc::now()).await.expect("observe");
        if done(&obs) {
            return obs;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "not reached within {DEADLINE:?}: {obs:#?}"
        );
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_cluster_context_reports_pdbs_that_allow_no_disruption() {
    let a = FakeKube::start();
    let hub = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    let r = "main@sha1:1111111111111111111111111111111111111111";
    a.apply(kustomization("flux-system", "flux-system", ok, r, r, 1, 1));
    a.apply(node("a-0", true, "v1.33.5", false));
    // zk-pdb as in the Kubernetes docs (one disruption allowed), and two that allow none: one
    // over three pods, one whose pods are all gone (blocks nothing).
    a.apply(pdb("default", "zk-pdb", 2, 3, 3));
    a.apply(pdb("kafka", "kafka-pdb", 3, 3, 3));
    a.apply(pdb("idle", "idle-pdb", 1, 0, 0));
    hub.apply(kustomization("b", "b-apps", ok, r, r, 1, 1));
    let src = KubeSource::start_with(Targets {
        hub: Some(hub.client()),
        spokes: vec![("a".into(), a.client())],
        ..Default::default()
    })
    .await
    .unwrap();
    src.ready(DEADLINE).await.unwrap();
    let obs = observe_until(&src, &["a", "b"], |o| o["a"].drain_blockers.is_some()).await;
    let blockers = obs["a"].drain_blockers.clone().unwrap();
    let shown: Vec<String> = blockers.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["PodDisruptionBudget kafka/kafka-pdb allows no disruption (3 pods)"]
    );
    // Hub mode only: no PodDisruptionBudget data at all (not "none block").
    assert_eq!(obs["b"].drain_blockers, None);
    // One list+watch of PDBs in all namespaces, never a GET per budget.
    assert_eq!(a.count_kind("poddisruptionbudgets", "LIST"), 1);
    assert_eq!(a.count_kind("poddisruptionbudgets", "GET"), 0);
    // A pod comes back: the budget allows a disruption again and the watch sees it.
    a.apply(pdb("kafka", "kafka-pdb", 3, 4, 4));
    observe_until(&src, &["a"], |o| {
        o["a"].drain_blockers.as_ref().is_some_and(Vec::is_empty)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Whole ticks of the binary
// ---------------------------------------------------------------------------------------------

const CANARY: [&str; 2] = ["dev-canary-01", "stg-kamaji-01"];

fn at(m: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::minutes(m)
}

struct Rig {
    dir: tempfile::TempDir,
    remote: PathBuf,
    git: GitRepo,
    kubeconfig: PathBuf,
    hub: FakeKube,
    spokes: BTreeMap<String, FakeKube>,
}

impl Rig {
    fn new(plan_edit: impl Fn(String) -> String) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
        let p = PathBuf::from("plans/demo.yaml");
        let text = String::from_utf8(files[&p].clone()).unwrap();
        files.insert(p, plan_edit(text).into_bytes());
        let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, at(0)).unwrap();
        let git = GitRepo::open(
            &dir.path().join("check.git"),
            remote.to_str().unwrap(),
            Auth::None,
        )
        .unwrap();
        let hub = FakeKube::start();
        let mut contexts = vec![("hub".to_string(), hub.base_url())];
        let mut spokes = BTreeMap::new();
        for c in CANARY {
            let k = FakeKube::start();
            contexts.push((format!("ctx-{c}"), k.base_url()));
            spokes.insert(c.to_string(), k);
        }
        let mut clusters = String::new();
        let mut ctxs = String::new();
        for (name, url) in &contexts {
            clusters.push_str(&format!("- name: {name}\n  cluster:\n    server: {url}\n"));
            ctxs.push_str(&format!(
                "- name: {name}\n  context:\n    cluster: {name}\n    user: u\n"
            ));
        }
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{ctxs}\
                 current-context: hub\nusers:\n- name: u\n  user:\n    token: t\n"
            ),
        )
        .unwrap();
        let rig = Rig {
            dir,
            remote,
            git,
            kubeconfig,
            hub,
            spokes,
        };
        let mut cluster = capi_cluster(
            "fleet-dev",
            "dev-canary-01",
            "v1.32.4",
            Some(("True", "ReconcileSucceeded")),
        );
        cluster["spec"]["controlPlaneRef"] = json!({"apiVersion": "controlplane.cluster.x-k8s.io/v1beta1",
            "kind": "KubeadmControlPlane", "name": "dev-canary-01-cp", "namespace": "fleet-dev"});
        rig.hub.apply(cluster);
        rig.hub.apply(kcp(
            "fleet-dev",
            "dev-canary-01-cp",
            "v1.32.4",
            "v1.32.4",
            3,
            3,
            3,
            3,
            3,
        ));
        let head = rig.head();
        let r = format!("main@sha1:{head}");
        for (c, k) in &rig.spokes {
            k.set_version("v1.32.4");
            k.apply(node(
                &format!("{c}-0"),
                true,
                "v1.32.4",
                c != "stg-kamaji-01",
            ));
            k.apply(pod("kube-system", "coredns-0", 0));
            let ok = ("True", "ReconciliationSucceeded");
            k.apply(kustomization(
                "flux-system",
                "flux-system",
                ok,
                &r,
                &r,
                1,
                1,
            ));
        }
        rig
    }

    fn head(&self) -> String {
        self.git.fetch().unwrap();
        self.git.branch_head("main").unwrap().unwrap()
    }

    fn state(&self) -> PlanState {
        self.git.fetch().unwrap();
        let head = self.git.branch_head("fleetwave/state").unwrap().unwrap();
        fleetwave::reconcile::read_single_state(&self.git, &head)
            .unwrap()
            .unwrap()
    }

    fn run(&self, cmd: &[&str], now: DateTime<Utc>) -> (i32, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(cmd)
            .args(["--clusters", "kube", "--kube-context", "hub"])
            .args(["--cluster-context", "ctx-{cluster}"])
            .args(["--remote", self.remote.to_str().unwrap()])
            .args(["--plan", "plans/demo.yaml"])
            .args([
                "--cache",
                self.dir.path().join("cache.git").to_str().unwrap(),
                "--now",
                &now.to_rfc3339(),
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let code = out.status.code().unwrap_or(-1);
        assert!(matches!(code, 0 | 1), "exit {code}: {text}");
        (code, stdout, text)
    }

    fn tick(&self, now: DateTime<Utc>) -> (i32, String) {
        let (code, _, text) = self.run(&["reconcile", "--once"], now);
        (code, text)
    }
}

#[test]
fn a_pdb_allowing_no_disruption_holds_a_whole_cluster_step_before_merge() {
    let rig = Rig::new(|t| t);
    // dev-canary-01 is a CAPI topology cluster: its first step sets the whole cluster, so
    // its workers are drained; zk-pdb allows no disruption over its 3 pods.
    rig.spokes["dev-canary-01"].apply(pdb("zk", "zk-pdb", 3, 3, 3));
    rig.tick(at(0)); // opens step 1
    let (code, text) = rig.tick(at(1));
    assert_eq!(code, 1, "a held rollout exits 1: {text}");
    let st = rig.state();
    let step = &st.waves[0].steps[0];
    assert_eq!(step.status, StepStatus::Open, "{st:?}");
    assert!(step.merge_intent.is_none(), "{st:?}");
    let posted = step.posted.as_ref().expect("a commit status");
    assert_eq!(
        posted.description,
        "holding: dev-canary-01: PodDisruptionBudget zk/zk-pdb allows no disruption (3 pods)"
    );
    assert_eq!(format!("{:?}", posted.state), "Pending");
    // status names the blocker for that cluster, and none for the other.
    let (_, json_out, _) = rig.run(&["status", "--output", "json"], at(1));
    let doc: Value = serde_json::from_str(&json_out).expect(&json_out);
    let row = |c: &str| {
        doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cluster"] == c)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("dev-canary-01")["drainBlockers"],
        json!([{"namespace": "zk", "name": "zk-pdb", "expectedPods": 3}])
    );
    assert_eq!(
        row("stg-kamaji-01")["drain"],
        "no PodDisruptionBudget blocks a drain"
    );
    let (_, text, _) = rig.run(&["status"], at(1));
    assert!(
        text.contains("drain:    BLOCKED: PodDisruptionBudget zk/zk-pdb allows no disruption"),
        "{text}"
    );
    // The budget allows a disruption again: the next tick merges.
    rig.spokes["dev-canary-01"].apply(pdb("zk", "zk-pdb", 2, 3, 3));
    let (code, text) = rig.tick(at(2));
    assert_eq!(code, 0, "{text}");
    let st = rig.state();
    assert!(st.waves[0].steps[0].merge_intent.is_some(), "{st:?}");
}

#[test]
fn allow_drain_blockers_lets_the_step_merge() {
    let rig = Rig::new(|t| {
        t.replace(
            "        automated: true\n",
            "        automated: true\n      allowDrainBlockers: true\n",
        )
    });
    rig.spokes["dev-canary-01"].apply(pdb("zk", "zk-pdb", 3, 3, 3));
    rig.tick(at(0));
    let (code, text) = rig.tick(at(1));
    assert_eq!(code, 0, "{text}");
    let st = rig.state();
    assert!(st.waves[0].steps[0].merge_intent.is_some(), "{st:?}");
}
