//! Linear-time YAML checks: a ConfigMap with 100,000 keys (about 3 MB), parsed with the
//! duplicate-key check, and a whole `plan` of a fleet that holds it.
//!
//!   cargo bench --locked --bench yaml_keys            # 100,000 keys
//!   KEYS=60000 cargo bench --locked --bench yaml_keys
//!
//! Before the duplicate-key check used a hash set it compared each key with every earlier
//! one: 100,000 keys took about 50 s; now it is well under a second.

use std::time::Instant;

fn config_map(keys: usize) -> String {
    let mut t = String::with_capacity(keys * 32);
    t.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n");
    for i in 0..keys {
        t.push_str(&format!("  key-{i:06}: value-{i}\n"));
    }
    t
}

const PLAN: &str = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: bench\nspec:\n  targetVersion: v1.33.5\n  waves:\n    - name: canary\n      clusterSelector:\n        matchLabels: {upgrade-wave: canary}\n";

fn main() {
    let keys: usize = std::env::var("KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let text = config_map(keys);
    let started = Instant::now();
    let docs = fleetwave::yaml::parse(&text).expect("parses");
    let parse = started.elapsed();
    assert_eq!(docs.len(), 1);

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("clusters/c1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("big.yaml"), &text).expect("write");
    std::fs::write(
        dir.join("cluster.yaml"),
        "apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\nmetadata:\n  name: c1\n  labels: {upgrade-wave: canary}\nspec:\n  topology:\n    version: v1.32.4\n",
    )
    .expect("write");
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write");
    let started = Instant::now();
    let planned = fleetwave::disk::prepare(tmp.path(), &plan).expect("plans");
    let whole = started.elapsed();
    assert_eq!(planned.waves[0].clusters, vec!["c1".to_string()]);
    println!(
        "{keys} keys, {} bytes: yaml::parse {:.3} s, plan {:.3} s",
        text.len(),
        parse.as_secs_f64(),
        whole.as_secs_f64()
    );
}
