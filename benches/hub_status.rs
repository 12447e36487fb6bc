//! Scale benchmark: cluster state of a large fleet in hub mode, from the fake Kubernetes API.
//!
//!   cargo bench --locked --bench hub_status              # 10,000 clusters
//!   CLUSTERS=2000 cargo bench --locked --bench hub_status
//!
//! The hub holds, per cluster, a Flux Kustomization, a CAPI Cluster, a KubeadmControlPlane and
//! a MachineDeployment (40,000 objects at 10,000 clusters). Two measurements:
//! 1. `fleetwave status --clusters kube --output json` as a process (under GNU time): wall
//!    time, peak RSS and the API requests it made — the whole cost of one status run,
//!    including planning the generated fleet from Git.
//! 2. In process: `KubeSource` start to first lists, then `observe()` of every cluster, repeated:
//!    the per-tick cost once the watches run, and the API requests made per tick.

#[path = "../tests/common/fake_kube.rs"]
mod fake_kube;
// Benches build with cfg(test) but run no #[test]: the generator's own tests are unused here.
#[allow(dead_code)]
#[path = "../examples/gen_fleet/generate.rs"]
mod generate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_kube::{FakeKube, capi_cluster, kcp, kustomization, machine_deployment};
use fleetwave::adapters::cluster::kube::{KubeSource, Targets, upgrade_kinds};
use fleetwave::cluster::ClusterSource;

fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            read_tree(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
            out.insert(rel, std::fs::read(&p).expect("read"));
        }
    }
}

/// One process's wall time and peak RSS (KiB), as the report's two lines.
fn print_run(wall: Duration, peak_kb: u64) {
    println!("  wall time            {:>10.2} s", wall.as_secs_f64());
    println!(
        "  peak RSS             {:>10.1} MB",
        peak_kb as f64 / 1024.0
    );
}

/// Peak RSS in KiB from GNU time's `-f "%e %M"` output (the numbers are on the last line).
fn peak_kb_of(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `fleetwave status --output json` under GNU time, on the cache `cache` in `dir`, with cluster
/// state from `kubeconfig` when given: its output, wall time and peak RSS (KiB).
fn timed_status(
    dir: &Path,
    remote: &Path,
    cache: &str,
    kubeconfig: Option<&Path>,
) -> (std::process::Output, Duration, u64) {
    let timing = dir.join(format!("time-{cache}-{}", kubeconfig.is_some()));
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %M", "-o", timing.to_str().expect("utf-8")])
        .arg(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["status", "--output", "json"])
        .args(["--remote", remote.to_str().expect("utf-8")])
        .args(["--plan", "plans/bench.yaml"])
        .args(["--cache", dir.join(cache).to_str().expect("utf-8")]);
    if let Some(k) = kubeconfig {
        cmd.args(["--clusters", "kube"]).env("KUBECONFIG", k);
    }
    let t = Instant::now();
    let out = cmd
        .output()
        .expect("run fleetwave status (needs GNU time at /usr/bin/time)");
    (out, t.elapsed(), peak_kb_of(&timing))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let n: usize = std::env::var("CLUSTERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let fleet = tmp.path().join("fleet");
    eprintln!("generating {n} clusters ...");
    generate::generate_fleet(&fleet, n).expect("generate");
    let mut files = BTreeMap::new();
    read_tree(&fleet, &fleet, &mut files);
    let remote =
        fleetwave::demo::seed_remote_files(tmp.path(), &files, chrono::Utc::now()).expect("seed");
    drop(files);

    eprintln!("seeding the fake hub ...");
    let fake = FakeKube::start();
    let rev = "main@sha1:1111111111111111111111111111111111111111";
    let names: Vec<String> = (0..n).map(|i| format!("c-{i:05}")).collect();
    for c in &names {
        let ok = ("True", "ReconciliationSucceeded");
        fake.apply(kustomization(c, &format!("{c}-apps"), ok, rev, rev, 1, 1));
        fake.apply(capi_cluster(
            c,
            c,
            "v1.32.4",
            Some(("True", "ReconcileSucceeded")),
        ));
        fake.apply(kcp(
            c,
            &format!("{c}-cp"),
            "v1.32.4",
            "v1.32.4",
            3,
            3,
            3,
            1,
            1,
        ));
        fake.apply(machine_deployment(
            c,
            &format!("{c}-md-0"),
            c,
            "v1.32.4",
            3,
            3,
            3,
        ));
    }
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).expect("kubeconfig");

    let status = |cache: &str, kube: bool| {
        timed_status(
            tmp.path(),
            &remote,
            cache,
            kube.then_some(kubeconfig.as_path()),
        )
    };
    // 0. The same command without cluster state: what Git and planning alone cost.
    let (out0, wall0, peak0_kb) = status("cache0", false);
    assert!(matches!(out0.status.code(), Some(0 | 1)), "status failed");

    // 1. The status command as a process.
    let before = fake.requests();
    let log_before = fake.request_log().len();
    let (out, wall, peak_kb) = status("cache", true);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let rows = doc["clusters"].as_array().map_or(0, Vec::len);
    let with_flux = doc["clusters"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|r| r["flux"].is_object()).count());
    let status_requests = fake.requests() - before;
    let status_log: Vec<String> = fake.request_log()[log_before..].to_vec();

    // 1b. The same command again on the cache the first run left (Git fetched, the plan view
    // cached): what a repeated `status` costs once nothing changed in Git.
    let before_warm = fake.requests();
    let (warm, wall_warm, peak_warm_kb) = status("cache", true);
    assert_eq!(warm.stdout, out.stdout, "the warm run reports the same");
    let warm_requests = fake.requests() - before_warm;

    // 2. In process: start, first lists, then ticks.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (ready, ticks, tick_requests, obs_ok) = rt.block_on(async {
        let t = Instant::now();
        let src = KubeSource::start_with(Targets {
            hub: Some(fake.client()),
            hub_kinds: upgrade_kinds(),
            ..Default::default()
        })
        .await
        .expect("start");
        src.ready(Duration::from_secs(120)).await.expect("ready");
        let ready = t.elapsed();
        let before = fake.requests();
        let mut ticks = Vec::new();
        let mut ok = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let obs = src
                .observe(&names, chrono::Utc::now())
                .await
                .expect("observe");
            ticks.push(t.elapsed());
            ok = obs
                .values()
                .filter(|o| o.kustomizations.len() == 1 && o.components.len() == 3)
                .count();
        }
        (ready, ticks, fake.requests() - before, ok)
    });
    let best = ticks.iter().min().copied().unwrap_or_default();
    let mean = ticks.iter().sum::<Duration>() / ticks.len().max(1) as u32;

    println!(
        "hub-mode cluster state benchmark: {n} clusters, {} objects on the hub",
        4 * n
    );
    println!("fleetwave status --output json, no cluster state (Git and planning only):");
    print_run(wall0, peak0_kb);
    println!("fleetwave status --clusters kube --output json (one process):");
    print_run(wall, peak_kb);
    println!("  API requests         {:>10}", status_requests);
    for l in &status_log {
        println!("    {l}");
    }
    println!("  rows / with Flux     {:>10} / {with_flux}", rows);
    println!("the same again on its warm cache (nothing changed in Git):");
    print_run(wall_warm, peak_warm_kb);
    println!("  API requests         {:>10}", warm_requests);
    println!("KubeSource in process:");
    println!("  start to first lists {:>10.2} s", ready.as_secs_f64());
    println!(
        "  observe() per tick   {:>10.1} ms best, {:.1} ms mean of {}",
        best.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        ticks.len()
    );
    println!("  API requests / tick  {:>10}", tick_requests / ticks.len());
    println!("  clusters complete    {:>10} of {n}", obs_ok);
}
