//! Scale benchmark: cluster state of a large fleet in hub mode, from the fake Kubernetes API.
//!
//!   cargo bench --locked --bench hub_status              # 10,000 clusters
//!   CLUSTERS=2000 cargo bench --locked --bench hub_status
//!
//! The hub holds, per cluster, a Flux Kustomization, a CAPI Cluster, a KubeadmControlPlane and
//! a MachineDeployment (40,000 objects at 10,000 clusters). Two measurements:
//! 1. `fleetwave status --clusters kube --output json` as a process (under GNU time): wall
//!    time, peak RSS and the API requests it made — the whole cost of one status run,
//!    including fetching the fleet and planning it. On an empty cache the fleet comes over
//!    Git's smart HTTP from the fake GitHub (`git http-backend`: the server packs, as GitHub
//!    does), next to its floor: `git clone --bare` of the same URL plus one `fleetwave plan`
//!    of the same files on disk. One more run fetches from a local path, where libgit2 packs
//!    the objects itself (delta search included) before indexing them. With cluster state
//!    the fake hub serves 40,000 objects from the same 2 cores, so the floor is the same work
//!    done the same way by minimal clients: a plain paginated LIST of every kind (bodies
//!    skimmed for their continue token) beside `git clone --bare` then `fleetwave plan`.
//!    The fake serves each object serialized once (lists are warmed first, unmeasured), and
//!    the CPU the fake servers used during the status run is printed beside it.
//! 2. In process: `KubeSource` start to first lists, then `observe()` of every cluster, repeated:
//!    the per-tick cost once the watches run, and the API requests made per tick.

#[path = "../tests/common/fake_github.rs"]
mod fake_github;
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
use fleetwave::adapters::cluster::kube::{
    KubeSource, Targets, kustomization_resource, upgrade_kinds,
};
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

/// One process's wall time, peak RSS and CPU time, as the report's lines.
fn print_run(wall: Duration, usage: (u64, f64)) {
    println!("  wall time            {:>10.2} s", wall.as_secs_f64());
    println!(
        "  peak RSS             {:>10.1} MB",
        usage.0 as f64 / 1024.0
    );
    println!("  CPU (user + system)  {:>10.2} s", usage.1);
}

/// Peak RSS in KiB and CPU seconds (user + system) from GNU time's `-f "%e %M %U %S"` output
/// (the numbers are on the last line).
fn usage_of(path: &Path) -> (u64, f64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = text
        .lines()
        .last()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let num = |i: usize| fields.get(i).and_then(|s| s.parse::<f64>().ok());
    let peak = num(1).unwrap_or(0.0) as u64;
    (peak, num(2).unwrap_or(0.0) + num(3).unwrap_or(0.0))
}

const TOKEN: &str = "ghs_hub_status_bench";

/// CPU seconds (user + system) used so far by this process and by its waited-for children:
/// the fake hub serves from this process's threads, the fake GitHub from `git http-backend`
/// children, on the same cores as the command measured (itself a child, under GNU time).
fn served_cpu() -> f64 {
    let of = |who| {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(u.ru_utime) + secs(u.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

/// Every page of every kind the status lists, as a minimal client reads them: 500 objects a
/// page (kube-rs' watcher's page size), each body skimmed for its continue token only. Kinds
/// the hub does not serve answer 404 and count as empty. Returns the objects read.
async fn plain_lists(client: kube::Client) -> usize {
    let kinds = std::iter::once(kustomization_resource())
        .chain(upgrade_kinds().into_iter().map(|k| k.resource));
    let tasks: Vec<_> = kinds
        .map(|ar| tokio::spawn(list_kind(client.clone(), ar)))
        .collect();
    let mut n = 0;
    for t in tasks {
        n += t.await.expect("list task");
    }
    n
}

async fn list_kind(client: kube::Client, ar: kube::discovery::ApiResource) -> usize {
    #[derive(serde::Deserialize)]
    struct Page {
        metadata: PageMeta,
        items: Vec<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct PageMeta {
        #[serde(rename = "continue", default)]
        next: Option<String>,
    }
    let path = <kube::api::DynamicObject as kube::Resource>::url_path(&ar, None);
    let (mut n, mut next) = (0, None::<String>);
    loop {
        let mut lp = kube::api::ListParams::default().limit(500);
        if let Some(t) = &next {
            lp = lp.continue_token(t);
        }
        let req = kube::core::Request::new(&path)
            .list(&lp)
            .expect("list request");
        let Ok(text) = client.request_text(req).await else {
            return n;
        };
        let page: Page = serde_json::from_str(&text).expect("list page");
        n += page.items.len();
        next = page.metadata.next.filter(|t| !t.is_empty());
        if next.is_none() {
            return n;
        }
    }
}

/// A command under GNU time: its output, wall time, and peak RSS (KiB) with CPU seconds.
fn timed(
    dir: &Path,
    name: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Output, Duration, (u64, f64)) {
    let timing = dir.join(format!("time-{name}"));
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %M %U %S", "-o", timing.to_str().expect("utf-8")])
        .arg(program)
        .args(args)
        .envs(env.iter().copied());
    let t = Instant::now();
    let out = cmd
        .output()
        .expect("run under GNU time (needs /usr/bin/time)");
    (out, t.elapsed(), usage_of(&timing))
}

/// `fleetwave status --output json` from `remote`, on the cache `cache` in `dir`, with
/// cluster state from `kubeconfig` when given.
fn timed_status(
    dir: &Path,
    remote: &str,
    cache: &str,
    kubeconfig: Option<&Path>,
) -> (std::process::Output, Duration, (u64, f64)) {
    let cache_dir = dir.join(cache);
    let mut args = vec!["status", "--output", "json", "--remote", remote];
    args.extend(["--plan", "plans/bench.yaml"]);
    args.extend(["--cache", cache_dir.to_str().expect("utf-8")]);
    let mut env = vec![("GITHUB_TOKEN", TOKEN)];
    let k;
    if let Some(path) = kubeconfig {
        args.extend(["--clusters", "kube"]);
        k = path.to_str().expect("utf-8").to_string();
        env.push(("KUBECONFIG", &k));
    }
    let name = format!("{cache}-{}", kubeconfig.is_some());
    timed(dir, &name, env!("CARGO_BIN_EXE_fleetwave"), &args, &env)
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
    let local =
        fleetwave::demo::seed_remote_files(tmp.path(), &files, chrono::Utc::now()).expect("seed");
    let local = local.to_str().expect("utf-8").to_string();
    // The fleet on the fake GitHub, packed as a server keeps it.
    let gh = fake_github::FakeGitHub::start(TOKEN);
    gh.create_repo("acme", "fleet", &files, chrono::Utc::now());
    let repack = std::process::Command::new("git")
        .arg("-C")
        .arg(gh.repo_path("acme", "fleet"))
        .args(["repack", "-adq"])
        .status()
        .expect("git repack");
    assert!(repack.success(), "git repack");
    let url = gh.git_url("acme", "fleet");
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
            &url,
            cache,
            kube.then_some(kubeconfig.as_path()),
        )
    };
    // 0. The floor of an empty cache: git's own clone of the same URL, and one plan of the
    // same files from disk.
    let with_token = url.replacen("http://", &format!("http://x-access-token:{TOKEN}@"), 1);
    let clone_dir = tmp.path().join("git-clone.git");
    let clone_args = ["clone", "--bare", "--quiet", &with_token];
    let clone_args: Vec<&str> = clone_args
        .into_iter()
        .chain([clone_dir.to_str().expect("utf-8")])
        .collect();
    let (cloned, wall_clone, _) = timed(tmp.path(), "clone", "git", &clone_args, &[]);
    assert!(cloned.status.success(), "git clone: {cloned:?}");
    let plan_path = fleet.join("plans/bench.yaml");
    let plan_args = [
        "plan",
        "--repo",
        fleet.to_str().expect("utf-8"),
        "--plan",
        plan_path.to_str().expect("utf-8"),
        "--output",
        "json",
    ];
    let bin = env!("CARGO_BIN_EXE_fleetwave");
    let (planned, wall_plan, _) = timed(tmp.path(), "plan", bin, &plan_args, &[]);
    assert!(planned.status.success(), "plan: {planned:?}");
    // 0a. The floor with cluster state: the plain lists beside the clone, then the plan.
    let lists_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let floor_client = {
        let _in_runtime = lists_rt.enter();
        fake.client()
    };
    // One list of every kind first, unmeasured: the fake serializes each object once and
    // serves it from then on (as an API server serves from its watch cache), so every
    // measured list below, the floor's and fleetwave's, is served alike.
    let warmed = lists_rt.block_on(plain_lists(floor_client.clone()));
    assert_eq!(warmed, 4 * n, "the warm-up lists read every object");
    let t = Instant::now();
    let lister = lists_rt.spawn(async move {
        let t = Instant::now();
        (plain_lists(floor_client).await, t.elapsed())
    });
    let clone2 = tmp.path().join("git-clone-2.git");
    let clone2_args: Vec<&str> = clone_args[..3]
        .iter()
        .copied()
        .chain([with_token.as_str(), clone2.to_str().expect("utf-8")])
        .collect();
    let (cloned2, _, _) = timed(tmp.path(), "clone-2", "git", &clone2_args, &[]);
    assert!(cloned2.status.success(), "git clone: {cloned2:?}");
    let (planned2, _, _) = timed(tmp.path(), "plan-2", bin, &plan_args, &[]);
    assert!(planned2.status.success(), "plan: {planned2:?}");
    let (listed, wall_lists) = lists_rt.block_on(lister).expect("lists");
    let wall_kube_floor = t.elapsed();
    assert_eq!(listed, 4 * n, "the plain lists read every object");

    // 0b. Status without cluster state: what Git and planning alone cost, over smart HTTP
    // and from a local path.
    let (out0, wall0, use0) = status("cache0", false);
    assert!(matches!(out0.status.code(), Some(0 | 1)), "status failed");
    let (out_local, wall_local, use_local) = timed_status(tmp.path(), &local, "cache-local", None);
    assert_eq!(
        out_local.stdout, out0.stdout,
        "a local path reports the same"
    );

    // 1. The status command as a process.
    let before = fake.requests();
    let log_before = fake.request_log().len();
    let served_from = served_cpu();
    let (out, wall, use1) = status("cache", true);
    // Less the measured command's own CPU, which GNU time reports.
    let served = served_cpu() - served_from - use1.1;
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
    let (warm, wall_warm, use_warm) = status("cache", true);
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
    println!("floor of an empty cache (smart HTTP from the fake GitHub):");
    println!(
        "  git clone --bare     {:>10.2} s",
        wall_clone.as_secs_f64()
    );
    println!(
        "  fleetwave plan       {:>10.2} s (the same files on disk)",
        wall_plan.as_secs_f64()
    );
    println!(
        "  floor                {:>10.2} s",
        (wall_clone + wall_plan).as_secs_f64()
    );
    println!(
        "fleetwave status --output json, no cluster state (Git and planning only), empty cache:"
    );
    print_run(wall0, use0);
    println!(
        "  x floor              {:>10.2}",
        wall0.as_secs_f64() / (wall_clone + wall_plan).as_secs_f64()
    );
    println!("the same, fetched from a local path (libgit2 packs the objects itself):");
    print_run(wall_local, use_local);
    println!("floor with cluster state (plain lists beside git clone --bare, then plan):");
    println!(
        "  plain lists          {:>10.2} s ({listed} objects, running beside the rest)",
        wall_lists.as_secs_f64()
    );
    println!(
        "  floor                {:>10.2} s",
        wall_kube_floor.as_secs_f64()
    );
    println!("fleetwave status --clusters kube --output json (one process), empty cache:");
    print_run(wall, use1);
    println!(
        "  fake servers' CPU    {:>10.2} s (Git and the hub, on the same cores)",
        served
    );
    println!(
        "  x floor              {:>10.2}",
        wall.as_secs_f64() / wall_kube_floor.as_secs_f64()
    );
    println!("  API requests         {:>10}", status_requests);
    for l in &status_log {
        println!("    {l}");
    }
    println!("  rows / with Flux     {:>10} / {with_flux}", rows);
    println!("the same again on its warm cache (nothing changed in Git):");
    print_run(wall_warm, use_warm);
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
