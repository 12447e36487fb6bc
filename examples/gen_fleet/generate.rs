//! Synthetic fleet generator for the scale benchmarks (`cargo run --release --example gen_fleet`).
//!
//! Owns the on-disk shape of the benchmark fleet: an openCenter-style repository with one
//! identity file per cluster under `infrastructure/clusters/<c>/`, a kustomize overlay, a Flux
//! `GitRepository` pinning gitops-base and a multi-document Flux Kustomization file under
//! `applications/overlays/<c>/`, plus `fleetwave.yaml` and `plans/bench.yaml`.
//!
//! Output is a pure function of the cluster count (no randomness, no clock, no environment),
//! so two runs compare byte for byte and benchmark numbers are comparable across machines.
//! The cluster kinds rotate through CAPI topology, CAPI with separate control plane and
//! workers, Kamaji and k0smotron so every built-in Kubernetes-version locator is exercised.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

/// What `generate_fleet` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenStats {
    pub clusters: usize,
    pub files: usize,
    pub bytes: u64,
}

const K8S_VERSION: &str = "v1.32.4";
const BASE_TAG: &str = "2026.01";
const BASE_URL_HTTPS: &str = "https://github.com/opencenter-cloud/openCenter-gitops-base.git";
const BASE_URL_SSH: &str = "ssh://git@github.com/opencenter-cloud/openCenter-gitops-base.git";
const BASE_REMOTE: &str = "github.com/opencenter-cloud/openCenter-gitops-base";

const SERVICES: &[&str] = &[
    "cert-manager",
    "ingress-nginx",
    "kyverno",
    "longhorn",
    "metallb",
    "velero",
    "kube-prometheus-stack",
    "sealed-secrets",
    "external-snapshotter",
    "gateway-api",
    "olm",
    "headlamp",
];

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ca-central-1",
    "sa-east-1",
];

const CAPI_PROVIDERS: &[&str] = &["openstack", "aws", "vsphere"];

const FLEET_CONFIG: &str = "\
# fleetwave configuration for the synthetic benchmark fleet.
# One cluster spans its application overlay and its infrastructure folder.
clusters:
  paths:
    - applications/overlays/{cluster}
    - infrastructure/clusters/{cluster}
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    CapiTopology,
    CapiKubeadm,
    Kamaji,
    K0smotron,
}

impl Flavor {
    fn of(i: usize) -> Flavor {
        match i % 4 {
            0 => Flavor::CapiTopology,
            1 => Flavor::CapiKubeadm,
            2 => Flavor::Kamaji,
            _ => Flavor::K0smotron,
        }
    }
}

const WAVES: [&str; 4] = ["canary", "standard", "critical", "regulated"];

/// Wave of cluster `i` out of `n`: contiguous index ranges, so the split is exact and stable
/// and every wave still mixes all four cluster flavors.
fn wave(i: usize, n: usize) -> &'static str {
    let canary = n.div_ceil(100).max(1);
    let standard = canary + n * 60 / 100;
    let critical = standard + n * 30 / 100;
    if i < canary {
        "canary"
    } else if i < standard {
        "standard"
    } else if i < critical {
        "critical"
    } else {
        "regulated"
    }
}

/// splitmix64: cheap, well-mixed, and fixed forever, so choices never depend on std's hasher.
fn mix(i: usize, salt: u64) -> u64 {
    let mut z = (i as u64)
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(list: &[&'a str], i: usize, salt: u64) -> &'a str {
    list[(mix(i, salt) % list.len() as u64) as usize]
}

struct Cluster<'a> {
    name: String,
    idx: usize,
    flavor: Flavor,
    wave: &'static str,
    env: &'static str,
    region: &'a str,
    provider: &'a str,
    svc: &'a str,
    svc2: &'a str,
    customer: u64,
    team: u64,
}

impl<'a> Cluster<'a> {
    fn new(i: usize, n: usize) -> Cluster<'a> {
        let flavor = Flavor::of(i);
        let wave = wave(i, n);
        let env = match wave {
            "canary" => "dev",
            "standard" if mix(i, 1).is_multiple_of(3) => "staging",
            _ => "prod",
        };
        let provider = match flavor {
            Flavor::CapiTopology | Flavor::CapiKubeadm => pick(CAPI_PROVIDERS, i, 2),
            Flavor::Kamaji => "kamaji",
            Flavor::K0smotron => "k0smotron",
        };
        let s1 = (mix(i, 3) % SERVICES.len() as u64) as usize;
        // Offset in 1..len keeps the second remote service distinct from the first.
        let s2 = (s1 + 1 + (mix(i, 4) % (SERVICES.len() as u64 - 1)) as usize) % SERVICES.len();
        Cluster {
            name: format!("c-{i:05}"),
            idx: i,
            flavor,
            wave,
            env,
            region: pick(REGIONS, i, 5),
            provider,
            svc: SERVICES[s1],
            svc2: SERVICES[s2],
            customer: mix(i, 6) % 900 + 100,
            team: mix(i, 7) % 24 + 1,
        }
    }
}

/// Write a synthetic fleet of `clusters` clusters (about 4 YAML files each) under `root`,
/// plus `fleetwave.yaml` and `plans/bench.yaml`. Deterministic for a given count.
pub fn generate_fleet(root: &Path, clusters: usize) -> io::Result<GenStats> {
    let mut stats = GenStats {
        clusters,
        files: 0,
        bytes: 0,
    };
    // One buffer for every file: at 40,000 files, per-file allocations show up in profiles.
    let mut buf = String::with_capacity(8 * 1024);

    fs::create_dir_all(root.join("plans"))?;
    write_file(&root.join("fleetwave.yaml"), FLEET_CONFIG, &mut stats)?;
    buf.clear();
    bench_plan(&mut buf);
    write_file(&root.join("plans/bench.yaml"), &buf, &mut stats)?;

    let infra = root.join("infrastructure/clusters");
    let overlays = root.join("applications/overlays");
    for i in 0..clusters {
        let c = Cluster::new(i, clusters);

        let infra_dir = infra.join(&c.name);
        fs::create_dir_all(&infra_dir)?;
        buf.clear();
        cluster_yaml(&mut buf, &c);
        write_file(&infra_dir.join("cluster.yaml"), &buf, &mut stats)?;
        if c.flavor == Flavor::CapiKubeadm {
            buf.clear();
            controlplane_yaml(&mut buf, &c);
            write_file(&infra_dir.join("controlplane.yaml"), &buf, &mut stats)?;
        }

        let ov = overlays.join(&c.name);
        let sources = ov.join("services/sources");
        let fluxcd = ov.join("services/fluxcd");
        // create_dir_all on the two leaves creates every parent; no per-file mkdir.
        fs::create_dir_all(&sources)?;
        fs::create_dir_all(&fluxcd)?;
        buf.clear();
        kustomization_yaml(&mut buf, &c);
        write_file(&ov.join("kustomization.yaml"), &buf, &mut stats)?;
        buf.clear();
        source_yaml(&mut buf, &c);
        write_file(
            &sources.join(format!("opencenter-{}.yaml", c.svc)),
            &buf,
            &mut stats,
        )?;
        buf.clear();
        flux_kustomizations_yaml(&mut buf, &c);
        write_file(&fluxcd.join(format!("{}.yaml", c.svc)), &buf, &mut stats)?;
    }
    Ok(stats)
}

fn write_file(path: &Path, text: &str, stats: &mut GenStats) -> io::Result<()> {
    fs::write(path, text)?;
    stats.files += 1;
    stats.bytes += text.len() as u64;
    Ok(())
}

// Writing into a String cannot fail; the helpers below ignore fmt::Result through `w!`.
macro_rules! w {
    ($buf:expr, $($arg:tt)*) => {
        let _ = write!($buf, $($arg)*);
    };
}

fn bench_plan(b: &mut String) {
    b.push_str(
        "\
# Benchmark plan: every cluster of the synthetic fleet, four waves.
apiVersion: fleet.opencenter.cloud/v1alpha1
kind: FleetUpgradePlan
metadata:
  name: bench
spec:
  targetVersion: v1.33.5
  gitopsBase:
    url: https://github.com/opencenter-cloud/openCenter-gitops-base.git
    tag: \"2026.02\"
  waves:
",
    );
    for name in WAVES {
        w!(
            b,
            "    - name: {name}
      clusterSelector:
        matchLabels:
          upgrade-wave: {name}
      validation:
        healthCheckDuration: 1h
        automated: true
"
        );
    }
}

/// Labels every identity object carries; the wave label is what the plan selects on.
fn identity_metadata(b: &mut String, c: &Cluster, namespace: &str) {
    w!(
        b,
        "metadata:
  name: {name}
  namespace: {namespace}
  labels:
    upgrade-wave: {wave}
    env: {env}
    region: {region}
    provider: {provider}
    cluster.x-k8s.io/cluster-name: {name}
    opencenter.cloud/customer: cust-{customer}
    opencenter.cloud/tier: {tier}
    app.kubernetes.io/managed-by: opencenter
  annotations:
    opencenter.cloud/owner: platform-team-{team}
    opencenter.cloud/contact: \"oncall-{team}@example.com\"
    opencenter.cloud/runbook: https://runbooks.example.com/clusters/{name}
    opencenter.cloud/created-by: openCenter-cli v0.9.{patch}
",
        name = c.name,
        wave = c.wave,
        env = c.env,
        region = c.region,
        provider = c.provider,
        customer = c.customer,
        tier = match c.wave {
            "regulated" => "platinum",
            "critical" => "gold",
            _ => "silver",
        },
        team = c.team,
        patch = c.idx % 7,
    );
}

fn header(b: &mut String, c: &Cluster, what: &str) {
    w!(
        b,
        "# {what} for cluster {name} ({region}, {env}).
# Generated by openCenter-cli; edit through the cluster definition, not by hand.
# The upgrade-wave label decides when fleetwave upgrades this cluster.
",
        name = c.name,
        region = c.region,
        env = c.env,
    );
}

fn cluster_yaml(b: &mut String, c: &Cluster) {
    let pods = format!("10.{}.0.0/16", 64 + c.idx % 64);
    match c.flavor {
        Flavor::CapiTopology => {
            header(b, c, "Cluster API cluster (ClusterClass topology)");
            b.push_str("apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\n");
            identity_metadata(b, c, &c.name);
            w!(
                b,
                "spec:
  clusterNetwork:
    pods:
      cidrBlocks:
        - {pods}
    services:
      cidrBlocks:
        - 10.96.0.0/12
    serviceDomain: cluster.local
  topology:
    class: {provider}-default-v3
    # Kubernetes version of control plane and workers; bumped one minor at a time.
    version: {K8S_VERSION}
    controlPlane:
      replicas: 3
      metadata:
        labels:
          opencenter.cloud/role: control-plane
    workers:
      machineDeployments:
        - class: default-worker
          name: md-0
          replicas: {r0}
          failureDomain: az-1
        - class: default-worker
          name: md-1
          replicas: {r1}
          failureDomain: az-2
    variables:
      - name: imageRepository
        value: registry.k8s.io
      - name: dnsNameservers
        value:
          - 10.0.0.2
          - 1.1.1.1
      - name: controlPlaneFlavor
        value: m1.large
      - name: workerFlavor
        value: m1.xlarge
",
                provider = c.provider,
                r0 = 3 + c.idx % 5,
                r1 = 2 + c.idx % 3,
            );
        }
        Flavor::CapiKubeadm => {
            header(
                b,
                c,
                "Cluster API cluster (KubeadmControlPlane in controlplane.yaml)",
            );
            b.push_str("apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\n");
            identity_metadata(b, c, &c.name);
            w!(
                b,
                "spec:
  clusterNetwork:
    pods:
      cidrBlocks:
        - {pods}
    services:
      cidrBlocks:
        - 10.96.0.0/12
    serviceDomain: cluster.local
  controlPlaneRef:
    apiVersion: controlplane.cluster.x-k8s.io/v1beta1
    kind: KubeadmControlPlane
    name: {name}-control-plane
  infrastructureRef:
    apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
    kind: OpenStackCluster
    name: {name}
",
                name = c.name,
            );
        }
        Flavor::Kamaji => {
            header(b, c, "Kamaji hosted control plane");
            b.push_str("apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\n");
            identity_metadata(b, c, "tenants");
            w!(
                b,
                "spec:
  dataStore: etcd-shard-{shard}
  controlPlane:
    deployment:
      replicas: 3
      additionalMetadata:
        labels:
          tenant.clastix.io: {name}
      resources:
        apiServer:
          requests:
            cpu: 250m
            memory: 512Mi
    service:
      serviceType: LoadBalancer
  kubernetes:
    # Quoted on purpose: Kamaji examples quote the version.
    version: \"{K8S_VERSION}\"
    kubelet:
      cgroupfs: systemd
      preferredAddressTypes:
        - InternalIP
        - ExternalIP
    admissionControllers:
      - ResourceQuota
      - LimitRanger
  networkProfile:
    port: 6443
    certSANs:
      - {name}.{region}.k8s.example.com
    serviceCidr: 10.96.0.0/16
    podCidr: {pods}
    dnsServiceIPs:
      - 10.96.0.10
  addons:
    coreDNS: {{}}
    kubeProxy: {{}}
    konnectivity:
      server:
        port: 8132
",
                shard = c.idx % 8,
                name = c.name,
                region = c.region,
            );
        }
        Flavor::K0smotron => {
            header(b, c, "k0smotron hosted control plane");
            b.push_str("apiVersion: k0smotron.io/v1beta1\nkind: Cluster\n");
            identity_metadata(b, c, &c.name);
            w!(
                b,
                "spec:
  replicas: 3
  # k0s distribution suffix stays when the version is bumped.
  version: {K8S_VERSION}-k0s.0
  service:
    type: LoadBalancer
    apiPort: 6443
    konnectivityPort: 8132
  persistence:
    type: emptyDir
  k0sConfig:
    apiVersion: k0s.k0sproject.io/v1beta1
    kind: ClusterConfig
    spec:
      network:
        provider: calico
        podCIDR: {pods}
        serviceCIDR: 10.96.0.0/12
      telemetry:
        enabled: false
"
            );
        }
    }
}

fn controlplane_yaml(b: &mut String, c: &Cluster) {
    header(b, c, "Control plane and workers");
    w!(
        b,
        "apiVersion: controlplane.cluster.x-k8s.io/v1beta1
kind: KubeadmControlPlane
metadata:
  name: {name}-control-plane
  namespace: {name}
  labels:
    cluster.x-k8s.io/cluster-name: {name}
spec:
  replicas: 3
  # Control plane goes first; workers follow in a later step.
  version: {K8S_VERSION}
  rolloutStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
  machineTemplate:
    infrastructureRef:
      apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
      kind: OpenStackMachineTemplate
      name: {name}-control-plane-v{gen}
  kubeadmConfigSpec:
    clusterConfiguration:
      apiServer:
        extraArgs:
          cloud-provider: external
          audit-log-maxage: \"30\"
      controllerManager:
        extraArgs:
          cloud-provider: external
    initConfiguration:
      nodeRegistration:
        name: '{{{{ local_hostname }}}}'
        kubeletExtraArgs:
          cloud-provider: external
    joinConfiguration:
      nodeRegistration:
        name: '{{{{ local_hostname }}}}'
        kubeletExtraArgs:
          cloud-provider: external
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: MachineDeployment
metadata:
  name: {name}-md-0
  namespace: {name}
  labels:
    cluster.x-k8s.io/cluster-name: {name}
spec:
  clusterName: {name}
  replicas: {replicas}
  selector:
    matchLabels:
      cluster.x-k8s.io/cluster-name: {name}
  template:
    spec:
      clusterName: {name}
      # Never newer than the control plane.
      version: {K8S_VERSION}
      failureDomain: az-{az}
      bootstrap:
        configRef:
          apiVersion: bootstrap.cluster.x-k8s.io/v1beta1
          kind: KubeadmConfigTemplate
          name: {name}-md-0
      infrastructureRef:
        apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
        kind: OpenStackMachineTemplate
        name: {name}-md-0-v{gen}
",
        name = c.name,
        gen = 1 + c.idx % 4,
        replicas = 3 + c.idx % 6,
        az = 1 + c.idx % 3,
    );
}

fn kustomization_yaml(b: &mut String, c: &Cluster) {
    header(b, c, "Application overlay");
    w!(
        b,
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: flux-system
resources:
  - flux-system
  - services/sources/opencenter-{svc}.yaml
  - services/fluxcd/{svc}.yaml
  # Shared bases straight from gitops-base, pinned to a release tag.
  - {BASE_REMOTE}//applications/base/services/{svc}?ref={BASE_TAG}
  - {BASE_REMOTE}//applications/base/services/{svc2}?ref={BASE_TAG}
commonLabels:
  opencenter.cloud/cluster: {name}
  opencenter.cloud/region: {region}
configMapGenerator:
  # Cluster facts consumed by Flux postBuild.substituteFrom.
  - name: cluster-info
    options:
      disableNameSuffixHash: true
    literals:
      - CLUSTER_NAME={name}
      - CLUSTER_REGION={region}
      - CLUSTER_ENV={env}
patches:
  - target:
      kind: Kustomization
      name: {svc}
    patch: |-
      - op: replace
        path: /spec/interval
        value: 10m
",
        svc = c.svc,
        svc2 = c.svc2,
        name = c.name,
        region = c.region,
        env = c.env,
    );
}

fn source_yaml(b: &mut String, c: &Cluster) {
    header(b, c, "gitops-base source");
    w!(
        b,
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: opencenter-{svc}
  namespace: flux-system
  labels:
    opencenter.cloud/service: {svc}
    app.kubernetes.io/part-of: opencenter
  annotations:
    # Bumped together with every other opencenter-* source of this cluster.
    opencenter.cloud/pinned-by: openCenter-cli
spec:
  interval: 15m
  timeout: 60s
  url: {BASE_URL_HTTPS}
  ref:
    tag: {BASE_TAG}
  secretRef:
    name: opencenter-base-https
  ignore: |
    /*
    !/applications/base/services/{svc}
# To pull gitops-base over ssh instead, replace the block above with:
# ---
# apiVersion: source.toolkit.fluxcd.io/v1
# kind: GitRepository
# metadata:
#   name: opencenter-{svc}
#   namespace: flux-system
# spec:
#   interval: 15m
#   url: {BASE_URL_SSH}
#   ref:
#     tag: {BASE_TAG}
#   secretRef:
#     name: opencenter-base-ssh
",
        svc = c.svc,
    );
}

fn flux_kustomizations_yaml(b: &mut String, c: &Cluster) {
    header(b, c, "Flux Kustomizations");
    w!(
        b,
        "apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {svc}-base
  namespace: flux-system
spec:
  interval: 10m
  retryInterval: 1m
  timeout: 5m
  prune: true
  wait: true
  sourceRef:
    kind: GitRepository
    name: opencenter-{svc}
  path: ./applications/base/services/{svc}
  targetNamespace: {svc}
  postBuild:
    substitute:
      CLUSTER_NAME: {name}
      CLUSTER_REGION: {region}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {svc}
  namespace: flux-system
spec:
  # Overlay values apply after the base is healthy.
  dependsOn:
    - name: {svc}-base
  interval: 10m
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
  path: ./applications/overlays/{name}/services/{svc}
  healthChecks:
    - apiVersion: apps/v1
      kind: Deployment
      name: {svc}
      namespace: {svc}
",
        svc = c.svc,
        name = c.name,
        region = c.region,
    );
}

// benchmarks rely on.
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn all_files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    fn expected_files(n: usize) -> usize {
        let kubeadm = (0..n)
            .filter(|&i| Flavor::of(i) == Flavor::CapiKubeadm)
            .count();
        2 + 4 * n + kubeadm
    }

    #[test]
    fn gen_file_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let stats = generate_fleet(dir.path(), 20).unwrap();
        let files = all_files(dir.path());
        assert_eq!(stats.clusters, 20);
        assert_eq!(stats.files, expected_files(20));
        assert_eq!(files.len(), stats.files);
        let bytes: u64 = files.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
        assert_eq!(bytes, stats.bytes);
        assert!(dir.path().join("fleetwave.yaml").is_file());
        assert!(dir.path().join("plans/bench.yaml").is_file());
        assert!(
            dir.path()
                .join("infrastructure/clusters/c-00001/controlplane.yaml")
                .is_file()
        );
    }

    #[test]
    fn gen_is_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert_eq!(
            generate_fleet(a.path(), 20).unwrap(),
            generate_fleet(b.path(), 20).unwrap()
        );
        let fa = all_files(a.path());
        let fb = all_files(b.path());
        let rel = |root: &Path, v: &[PathBuf]| -> Vec<PathBuf> {
            v.iter()
                .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
                .collect()
        };
        assert_eq!(rel(a.path(), &fa), rel(b.path(), &fb));
        for (pa, pb) in fa.iter().zip(&fb) {
            assert_eq!(
                fs::read(pa).unwrap(),
                fs::read(pb).unwrap(),
                "{}",
                pa.display()
            );
        }
    }

    #[test]
    fn gen_every_file_parses_and_sizes_are_realistic() {
        let dir = tempfile::tempdir().unwrap();
        generate_fleet(dir.path(), 20).unwrap();
        for path in all_files(dir.path()) {
            let text = fs::read_to_string(&path).unwrap();
            let docs = fleetwave::core::yaml::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert!(!docs.is_empty(), "{}", path.display());
            let under_clusters = path
                .strip_prefix(dir.path())
                .unwrap()
                .starts_with("applications")
                || path
                    .strip_prefix(dir.path())
                    .unwrap()
                    .starts_with("infrastructure");
            if under_clusters {
                assert!(
                    (1000..=4096).contains(&text.len()),
                    "{}: {} bytes",
                    path.display(),
                    text.len()
                );
            }
        }
    }

    #[test]
    fn gen_waves_and_flavors() {
        let n = 10_000;
        let count = |w: &str| (0..n).filter(|&i| wave(i, n) == w).count();
        assert_eq!(count("canary"), 100);
        assert_eq!(count("standard"), 6000);
        assert_eq!(count("critical"), 3000);
        assert_eq!(count("regulated"), 900);
        // Small fleets still get a canary.
        assert_eq!(wave(0, 20), "canary");
        assert_eq!(wave(1, 20), "standard");
        let dir = tempfile::tempdir().unwrap();
        generate_fleet(dir.path(), 4).unwrap();
        let read = |p: &str| fs::read_to_string(dir.path().join(p)).unwrap();
        assert!(
            read("infrastructure/clusters/c-00000/cluster.yaml").contains("version: v1.32.4\n")
        );
        let cp = read("infrastructure/clusters/c-00001/controlplane.yaml");
        assert!(cp.contains("kind: KubeadmControlPlane") && cp.contains("kind: MachineDeployment"));
        assert!(
            read("infrastructure/clusters/c-00002/cluster.yaml").contains("version: \"v1.32.4\"")
        );
        assert!(
            read("infrastructure/clusters/c-00003/cluster.yaml").contains("version: v1.32.4-k0s.0")
        );
        assert!(read("plans/bench.yaml").contains("upgrade-wave: regulated"));
    }
}
