//! Issue 11: the `fleetwave` binary on files taken from public repositories
//! (`fixtures/real/<project>/`, each folder's README names source, commit and licence).
//! Each test builds a small fleet repository in a temp dir from real files, a
//! `fleetwave.yaml` that puts the clusters in a wave, and a plan.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const NOW: &str = "2026-11-21T12:00:00Z";

fn real(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/real")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Fleet {
    dir: tempfile::TempDir,
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Fleet {
    /// `files`: (cluster, real file, name in the cluster's folder). Every cluster is
    /// labelled `upgrade-wave: canary` through fleetwave.yaml.
    fn new(files: &[(&str, &str, &str)]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut labels = String::new();
        for (cluster, src, name) in files {
            let p = dir.path().join("clusters").join(cluster).join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, real(src)).unwrap();
            let line = format!("    {cluster}: {{upgrade-wave: canary}}\n");
            if !labels.contains(&line) {
                labels.push_str(&line);
            }
        }
        let config = format!("clusters:\n  labels:\n{labels}");
        std::fs::write(dir.path().join("fleetwave.yaml"), config).unwrap();
        Fleet { dir }
    }

    fn path(&self, cluster: &str, name: &str) -> PathBuf {
        self.dir.path().join("clusters").join(cluster).join(name)
    }

    fn read(&self, cluster: &str, name: &str) -> String {
        std::fs::read_to_string(self.path(cluster, name)).unwrap()
    }

    /// Write the plan (`spec` lines without `waves`, indented by two) and return its path.
    fn plan(&self, spec: &str) -> String {
        let text = format!(
            "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: real\nspec:\n{spec}  waves:\n    - name: canary\n      clusterSelector:\n        matchLabels: {{upgrade-wave: canary}}\n"
        );
        let p = self.dir.path().join("plans/plan.yaml");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(args)
            .args(["--repo", self.dir.path().to_str().unwrap()])
            .env("FLEETWAVE_NOW", NOW)
            .env("NO_COLOR", "1")
            .output()
            .expect("run fleetwave");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn plan_json(&self, plan: &str) -> Value {
        let r = self.run(&["plan", "--plan", plan, "--output", "json"]);
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    }

    fn apply(&self, plan: &str) -> Run {
        self.run(&["apply", "--plan", plan, "--wave", "canary"])
    }
}

/// (step index, file, line, from, to) of every change of the first wave.
fn changes(doc: &Value) -> Vec<(u64, String, u64, String, String)> {
    let mut out = Vec::new();
    for s in doc["waves"][0]["steps"].as_array().unwrap() {
        for c in s["changes"].as_array().unwrap() {
            out.push((
                s["index"].as_u64().unwrap(),
                c["file"].as_str().unwrap().to_string(),
                c["line"].as_u64().unwrap(),
                c["from"].as_str().unwrap().to_string(),
                c["to"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// `text` with line `line` (1-based) changed from `from` to `to`, every other byte the same.
fn with_line(text: &str, line: usize, from: &str, to: &str) -> String {
    let mut out = String::new();
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            assert!(l.contains(from), "line {line} is {l:?}, not {from:?}");
            out.push_str(&l.replacen(from, to, 1));
        } else {
            out.push_str(l);
        }
    }
    out
}

fn c(step: u64, file: &str, line: u64, from: &str, to: &str) -> (u64, String, u64, String, String) {
    (step, file.into(), line, from.into(), to.into())
}

// ---- 1. control planes found as Machines; workers never raised without one -------------

#[test]
fn control_plane_machine_is_raised_before_the_machine_deployment() {
    let src = "cluster-api/simple-cluster-without-kcp-v1beta1.yaml";
    let f = Fleet::new(&[("capi", src, "cluster.yaml")]);
    let plan = f.plan("  targetVersion: v1.34.1\n");
    let file = "clusters/capi/cluster.yaml";
    assert_eq!(
        changes(&f.plan_json(&plan)),
        vec![
            c(1, file, 35, "v1.33.0", "v1.34.1"),
            c(2, file, 79, "v1.33.0", "v1.34.1"),
        ],
        "the control-plane Machine goes in step 1, the MachineDeployment in step 2"
    );
    let r = f.apply(&plan);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let before = String::from_utf8(real(src)).unwrap();
    let want = with_line(
        &with_line(&before, 35, "v1.33.0", "v1.34.1"),
        79,
        "v1.33.0",
        "v1.34.1",
    );
    assert_eq!(f.read("capi", "cluster.yaml"), want);
}

#[test]
fn workers_without_a_located_control_plane_are_refused() {
    for (src, line, col) in [
        ("k0smotron/k0sworkerconfig-lone.yaml", 7, 12),
        ("k0smotron/machine-with-k0sworkerconfig.yaml", 7, 12),
    ] {
        let f = Fleet::new(&[("k0s", src, "workers.yaml")]);
        let plan = f.plan("  targetVersion: v1.31.2\n");
        let before = f.read("k0s", "workers.yaml");
        for r in [f.run(&["plan", "--plan", &plan]), f.apply(&plan)] {
            assert_eq!(r.code, Some(2), "{src}: {}\n{}", r.stdout, r.stderr);
            let at = format!("clusters/k0s/workers.yaml:{line}:{col}");
            assert!(r.stderr.contains(&at), "{src}: want {at} in\n{}", r.stderr);
            assert!(
                r.stderr.contains("no control-plane version")
                    && r.stderr.contains("add the control plane's file"),
                "{src}: {}",
                r.stderr
            );
        }
        assert_eq!(
            f.read("k0s", "workers.yaml"),
            before,
            "{src}: nothing written"
        );
    }
}

// ---- 2. pre-releases and build suffixes -------------------------------------------------

#[test]
fn a_release_candidate_moves_to_the_next_minor_as_a_release() {
    let src = "cluster-api/simple-cluster-kcp-rc.yaml";
    let f = Fleet::new(&[("rc", src, "cluster.yaml")]);
    let plan = f.plan("  targetVersion: v1.38.0\n");
    let file = "clusters/rc/cluster.yaml";
    assert_eq!(
        changes(&f.plan_json(&plan)),
        vec![
            c(1, file, 36, "v1.37.0-rc.1", "v1.38.0"),
            c(2, file, 86, "v1.37.0-rc.1", "v1.38.0"),
        ]
    );
    assert_eq!(f.apply(&plan).code, Some(0));
    let before = String::from_utf8(real(src)).unwrap();
    let want = with_line(
        &with_line(&before, 36, "v1.37.0-rc.1", "v1.38.0"),
        86,
        "v1.37.0-rc.1",
        "v1.38.0",
    );
    assert_eq!(f.read("rc", "cluster.yaml"), want);
}

#[test]
fn a_release_candidate_to_its_release_is_an_upgrade() {
    let f = Fleet::new(&[(
        "rc",
        "cluster-api/simple-cluster-kcp-rc.yaml",
        "cluster.yaml",
    )]);
    let plan = f.plan("  targetVersion: v1.37.0\n");
    let doc = f.plan_json(&plan);
    let file = "clusters/rc/cluster.yaml";
    assert_eq!(
        changes(&doc),
        vec![
            c(1, file, 36, "v1.37.0-rc.1", "v1.37.0"),
            c(2, file, 86, "v1.37.0-rc.1", "v1.37.0"),
        ]
    );
    assert!(!doc.to_string().contains("already at the target"), "{doc}");
}

#[test]
fn a_pre_release_target_is_written_as_such() {
    let f = Fleet::new(&[("kamaji", "kamaji/tenantcontrolplane-kine.yaml", "tcp.yaml")]);
    let plan = f.plan("  targetVersion: v1.27.0-rc.1\n");
    assert_eq!(
        changes(&f.plan_json(&plan)),
        vec![c(
            1,
            "clusters/kamaji/tcp.yaml",
            20,
            "v1.26.0",
            "v1.27.0-rc.1"
        )]
    );
    assert_eq!(f.apply(&plan).code, Some(0));
    let before = String::from_utf8(real("kamaji/tenantcontrolplane-kine.yaml")).unwrap();
    assert_eq!(
        f.read("kamaji", "tcp.yaml"),
        with_line(&before, 20, "v1.26.0", "v1.27.0-rc.1")
    );
}

#[test]
fn distribution_suffixes_are_carried_reset_to_the_first_build() {
    let f = Fleet::new(&[(
        "rke2",
        "rke2/openstack-cluster-template.yaml",
        "cluster.yaml",
    )]);
    let plan = f.plan("  targetVersion: v1.31.4\n");
    let file = "clusters/rke2/cluster.yaml";
    assert_eq!(
        changes(&f.plan_json(&plan)),
        vec![
            c(1, file, 66, "v1.30.8+rke2r1", "v1.31.4+rke2r1"),
            c(2, file, 52, "v1.30.8+rke2r1", "v1.31.4+rke2r1"),
        ]
    );
    // k0smotron's control plane uses the older hyphen form; both forms are kept.
    let src = "k0smotron/k0smotroncontrolplane-docker-cluster.yaml";
    let f = Fleet::new(&[("k0s", src, "cluster.yaml")]);
    let plan = f.plan("  targetVersion: v1.28.4\n");
    let file = "clusters/k0s/cluster.yaml";
    assert_eq!(
        changes(&f.plan_json(&plan)),
        vec![
            c(1, file, 29, "v1.27.2-k0s.0", "v1.28.4-k0s.0"),
            c(2, file, 67, "v1.27.2+k0s.0", "v1.28.4+k0s.0"),
        ]
    );
}

#[test]
fn a_provider_build_suffix_is_refused_until_the_plan_names_the_value() {
    let src = "crossplane/gcp-containeraws-cluster.yaml";
    let f = Fleet::new(&[("gke-aws", src, "cluster.yaml")]);
    let plan = f.plan("  targetVersion: v1.24.5\n");
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(
        r.stderr.contains("clusters/gke-aws/cluster.yaml:46:16"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("-gke.1700")
            && r.stderr.contains(
                "versionOverrides: [{cluster: gke-aws, kind: Cluster, version: \"1.24.5-gke.N\"}]"
            ),
        "{}",
        r.stderr
    );
    assert_eq!(f.apply(&plan).code, Some(2));
    let before = String::from_utf8(real(src)).unwrap();
    assert_eq!(f.read("gke-aws", "cluster.yaml"), before);

    let plan = f.plan(
        "  targetVersion: v1.24.5\n  versionOverrides:\n    - {cluster: gke-aws, kind: Cluster, version: 1.24.5-gke.300}\n",
    );
    let r = f.apply(&plan);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        f.read("gke-aws", "cluster.yaml"),
        with_line(&before, 46, "1.23.8-gke.1700", "1.24.5-gke.300")
    );
}

#[test]
fn a_version_override_for_no_hop_of_the_plan_is_an_input_error() {
    let f = Fleet::new(&[(
        "gke-aws",
        "crossplane/gcp-containeraws-cluster.yaml",
        "cluster.yaml",
    )]);
    let plan = f.plan(
        "  targetVersion: v1.24.5\n  versionOverrides:\n    - {cluster: gke-aws, version: 1.25.1-gke.300}\n",
    );
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("plans/plan.yaml:8:35"), "{}", r.stderr);
    assert!(
        r.stderr.contains("not a version the plan goes to"),
        "{}",
        r.stderr
    );
}

// ---- 3. values inside kustomize strings -------------------------------------------------

#[test]
fn an_inline_json6902_tag_of_an_unknown_source_is_reported_with_its_line() {
    let f = Fleet::new(&[
        (
            "sylva",
            "kustomize/sylva-json6902-ociref-tag.yaml",
            "kustomization.yaml",
        ),
        (
            "sylva",
            "flux/gitrepository-ref-tag-prerelease.yaml",
            "source.yaml",
        ),
    ]);
    let plan = f.plan(
        "  gitopsBase:\n    url: https://github.com/cloudoperators/greenhouse\n    tag: v0.5.0\n",
    );
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("clusters/sylva/kustomization.yaml:11  sylva  patches[0].patch OCIRepository/sylva-units /spec/ref/tag  \"0.0.0-test\""),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("update it by hand"), "{}", r.stdout);
    let before = f.read("sylva", "kustomization.yaml");
    assert_eq!(f.apply(&plan).code, Some(0));
    assert_eq!(f.read("sylva", "kustomization.yaml"), before);
    assert!(f.read("sylva", "source.yaml").contains("tag: \"v0.5.0\""));
}

#[test]
fn image_tags_in_inline_patches_are_not_managed_values() {
    let f = Fleet::new(&[
        (
            "k",
            "kustomize/kustomization-inline-smp-image.yaml",
            "kustomization.yaml",
        ),
        (
            "k",
            "kustomize/kustomization-inline-json6902-replace-image.yaml",
            "json/kustomization.yaml",
        ),
        (
            "k",
            "flux/flux-kustomization-json6902-chart-version.yaml",
            "flux.yaml",
        ),
        ("k", "kamaji/tenantcontrolplane-kine.yaml", "tcp.yaml"),
    ]);
    let plan = f.plan("  targetVersion: v1.27.1\n");
    let got = changes(&f.plan_json(&plan));
    assert_eq!(
        got,
        vec![c(1, "clusters/k/tcp.yaml", 20, "v1.26.0", "v1.27.1")]
    );
}

#[test]
fn remote_base_refs_of_the_gitops_base_are_edited_in_the_url() {
    let src = "kustomize/kustomization-remote-ref-lws.yaml";
    let f = Fleet::new(&[("lws", src, "kustomization.yaml")]);
    let plan = f.plan(
        "  gitopsBase:\n    url: https://github.com/kubernetes-sigs/lws.git\n    tag: v0.8.1\n",
    );
    assert_eq!(f.apply(&plan).code, Some(0));
    let before = String::from_utf8(real(src)).unwrap();
    assert_eq!(
        f.read("lws", "kustomization.yaml"),
        with_line(&before, 5, "?ref=v0.8.0", "?ref=v0.8.1")
    );
}

// ---- 4. k0rdent ClusterDeployment spec.config.k0s.version ------------------------------

#[test]
fn k0rdent_k0s_version_is_edited_in_the_kubernetes_step() {
    let src = "k0rdent/clusterdeployment-remote-k0s-version.yaml";
    let f = Fleet::new(&[("remote", src, "clusterdeployment.yaml")]);
    let plan = f.plan("  targetVersion: v1.32.3\n");
    let doc = f.plan_json(&plan);
    assert_eq!(
        changes(&doc),
        vec![c(
            1,
            "clusters/remote/clusterdeployment.yaml",
            30,
            "v1.31.5+k0s.0",
            "v1.32.3+k0s.0"
        )]
    );
    assert!(
        !doc.to_string().contains("no Kubernetes version field"),
        "{doc}"
    );
    assert_eq!(f.apply(&plan).code, Some(0));
    let before = String::from_utf8(real(src)).unwrap();
    assert_eq!(
        f.read("remote", "clusterdeployment.yaml"),
        with_line(&before, 30, "v1.31.5+k0s.0", "v1.32.3+k0s.0")
    );
}

#[test]
fn the_missing_version_hint_is_worded_by_what_the_cluster_is() {
    let f = Fleet::new(&[
        ("kamaji", "kamaji/tenantcontrolplane-kine.yaml", "tcp.yaml"),
        (
            "kafka",
            "crossplane/aws-kafka-two-clusters.yaml",
            "kafka.yaml",
        ),
        ("kcm", "k0rdent/kcm-aws-clusterdeployment.yaml", "cd.yaml"),
    ]);
    let plan = f.plan("  targetVersion: v1.27.1\n");
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let line = |c: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(&format!("cluster {c}: no Kubernetes version field")))
            .unwrap_or_else(|| panic!("no hint for {c}:\n{}", r.stdout))
            .to_string()
    };
    assert!(!line("kafka").contains("k0rdent"), "{}", line("kafka"));
    assert!(line("kafka").contains("$fleetwave"), "{}", line("kafka"));
    assert!(line("kcm").contains("k0rdent"), "{}", line("kcm"));
}

// ---- 5. empty plans, Crossplane files with several Cluster documents ---------------------

#[test]
fn a_plan_that_selects_no_cluster_is_an_error() {
    let f = Fleet::new(&[("kamaji", "kamaji/tenantcontrolplane.yaml", "tcp.yaml")]);
    let plan = f.plan("  targetVersion: v1.36.1\n");
    std::fs::write(
        f.dir.path().join("fleetwave.yaml"),
        "clusters:\n  labels:\n    kamaji: {upgrade-wave: later}\n",
    )
    .unwrap();
    for args in [
        vec!["plan", "--plan", &plan],
        vec!["apply", "--plan", &plan, "--wave", "canary"],
    ] {
        let r = f.run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("plans/plan.yaml:7:3"), "{}", r.stderr);
        assert!(r.stderr.contains("selects any cluster"), "{}", r.stderr);
        let mut allow = args.clone();
        allow.push("--allow-empty");
        assert_eq!(f.run(&allow).code, Some(1), "{allow:?}");
    }
}

#[test]
fn a_gitops_base_that_matches_no_field_is_an_error() {
    let f = Fleet::new(&[(
        "argo",
        "kustomize/kustomization-remote-ref-argo.yaml",
        "kustomization.yaml",
    )]);
    let plan = f.plan(
        "  gitopsBase:\n    url: https://github.com/acme/gitops-base.git\n    tag: \"2026.02\"\n",
    );
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("plans/plan.yaml:7:10"), "{}", r.stderr);
    assert!(r.stderr.contains("matches no Flux source"), "{}", r.stderr);
}

#[test]
fn crossplane_files_with_several_cluster_documents_raise_no_label_conflict() {
    let f = Fleet::new(&[
        ("db", "crossplane/aws-dsql-two-clusters.yaml", "dsql.yaml"),
        ("db", "crossplane/aws-kafka-two-clusters.yaml", "kafka.yaml"),
        ("db", "kamaji/tenantcontrolplane-kine.yaml", "tcp.yaml"),
    ]);
    let plan = f.plan("  targetVersion: v1.27.1\n");
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        !r.stdout.contains("label testing.upbound.io"),
        "{}",
        r.stdout
    );
}

/// Not from a public repository (none was found that patches a Kubernetes version inline):
/// a self-written kustomization, next to a real KubeadmControlPlane, proving the edit
/// inside a literal block is byte-surgical and re-parses.
#[test]
fn a_kubernetes_version_inside_an_inline_json6902_patch_is_edited_in_place() {
    let f = Fleet::new(&[(
        "rc",
        "cluster-api/simple-cluster-kcp-rc.yaml",
        "cluster.yaml",
    )]);
    let kustomization = "resources:\n  - cluster.yaml\npatches:\n  - target:\n      kind: KubeadmControlPlane\n    patch: |-\n      - op: replace\n        path: /spec/version\n        value: v1.37.0-rc.1 # pinned\n      - op: replace\n        path: /spec/template/spec/containers/0/image\n        value: nginx:1.21.0\n";
    std::fs::write(f.path("rc", "kustomization.yaml"), kustomization).unwrap();
    let plan = f.plan("  targetVersion: v1.37.1\n");
    let got = changes(&f.plan_json(&plan));
    assert!(
        got.contains(&c(
            1,
            "clusters/rc/kustomization.yaml",
            9,
            "v1.37.0-rc.1",
            "v1.37.1"
        )),
        "{got:?}"
    );
    let r = f.apply(&plan);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        f.read("rc", "kustomization.yaml"),
        kustomization.replace("v1.37.0-rc.1", "v1.37.1")
    );
}

// ---- issue 17: hops from the release catalog, removed APIs ------------------------------

#[test]
fn hops_are_computed_from_the_built_in_catalog_when_the_plan_lists_none() {
    let src = "cluster-api/simple-cluster-without-kcp-v1beta1.yaml";
    let f = Fleet::new(&[("capi", src, "cluster.yaml")]);
    let plan = f.plan("  targetVersion: v1.35.2\n");
    let file = "clusters/capi/cluster.yaml";
    let doc = f.plan_json(&plan);
    // The built-in catalog's newest 1.34 patch is 1.34.9: one hop per minor, control plane
    // before workers at each.
    assert_eq!(
        changes(&doc),
        vec![
            c(1, file, 35, "v1.33.0", "v1.34.9"),
            c(2, file, 79, "v1.33.0", "v1.34.9"),
            c(3, file, 35, "v1.34.9", "v1.35.2"),
            c(4, file, 79, "v1.34.9", "v1.35.2"),
        ]
    );
    let text = f.run(&["plan", "--plan", &plan]).stdout;
    assert!(
        text.contains("computed from the release catalog (built-in, as of"),
        "{text}"
    );
}

#[test]
fn a_manifest_on_an_api_the_target_no_longer_serves_is_refused_with_its_line() {
    let src = "cluster-api/simple-cluster-without-kcp-v1beta1.yaml";
    let f = Fleet::new(&[
        ("capi", src, "cluster.yaml"),
        ("capi", "podinfo/hpa.yaml", "hpa.yaml"),
    ]);
    // The real cluster, set back to 1.25 (every other byte as published).
    let old = with_line(
        &with_line(
            &String::from_utf8(real(src)).unwrap(),
            35,
            "v1.33.0",
            "v1.25.16",
        ),
        79,
        "v1.33.0",
        "v1.25.16",
    );
    std::fs::write(f.path("capi", "cluster.yaml"), &old).unwrap();
    let plan = f.plan("  targetVersion: v1.26.15\n");
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(2), "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("clusters/capi/hpa.yaml:1:13"), "{all}");
    assert!(
        all.contains("HorizontalPodAutoscaler podinfo uses autoscaling/v2beta2")
            && all.contains("autoscaling/v2"),
        "{all}"
    );
    // Staying below the removal is fine.
    let plan = f.plan("  targetVersion: v1.25.16\n");
    let r = f.run(&["plan", "--plan", &plan]);
    assert!(
        !format!("{}{}", r.stdout, r.stderr).contains("v2beta2"),
        "{}",
        r.stdout
    );
}

// ---- issue 17: versions and templates a cluster is offered (Git only) ------------------

/// The docs' topology Cluster, pointed at the proposal's ClusterClass and set to its oldest
/// listed version (the only edits: both names and the version, see the fixture README).
fn topology_fleet() -> Fleet {
    let f = Fleet::new(&[
        (
            "my-docker-cluster",
            "cluster-api/topology-cluster-docker.yaml",
            "cluster.yaml",
        ),
        (
            "my-docker-cluster",
            "cluster-api/clusterclass-kubernetes-versions.yaml",
            "clusterclass.yaml",
        ),
    ]);
    let cluster = f
        .read("my-docker-cluster", "cluster.yaml")
        .replace("docker-clusterclass-v0.1.0", "quick-start-runtimesdk")
        .replace("v1.22.4", "v1.28.0");
    std::fs::write(f.path("my-docker-cluster", "cluster.yaml"), cluster).unwrap();
    f
}

#[test]
fn a_topology_version_its_cluster_class_does_not_list_is_refused() {
    let f = topology_fleet();
    // Hops computed from the release catalog take each minor's newest patch, which the class
    // does not list.
    let plan = f.plan("  targetVersion: v1.31.2\n");
    let r = f.run(&["plan", "--plan", &plan]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(2), "{all}");
    assert!(
        all.contains("clusters/my-docker-cluster/cluster.yaml:9:14"),
        "{all}"
    );
    assert!(
        all.contains(
            "ClusterClass quick-start-runtimesdk (clusters/my-docker-cluster/clusterclass.yaml:7)"
        ) && all.contains("use v1.29.0 for 1.29"),
        "{all}"
    );
    // The class's own versions pass.
    let plan = f.plan("  targetVersion: v1.31.2\n  intermediateVersions: [v1.29.0, v1.30.1]\n");
    let r = f.run(&["plan", "--plan", &plan]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(0), "{all}");
    assert!(!all.contains("ClusterClass"), "{all}");
    // A target past the class's newest: refused, pointing at the listed patch.
    let plan = f.plan("  targetVersion: v1.31.3\n  intermediateVersions: [v1.29.0, v1.30.1]\n");
    let r = f.run(&["plan", "--plan", &plan]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(2), "{all}");
    assert!(
        all.contains("sets my-docker-cluster to v1.31.3") && all.contains("use v1.31.2"),
        "{all}"
    );
}

#[test]
fn a_template_swap_the_repository_chains_do_not_offer_is_warned_about() {
    let f = Fleet::new(&[(
        "aws",
        "k0rdent/kcm-aws-clusterdeployment.yaml",
        "clusterdeployment.yaml",
    )]);
    let cd = f
        .read("aws", "clusterdeployment.yaml")
        .replace("aws-standalone-cp-1-0-43", "aws-standalone-cp-0-0-2");
    std::fs::write(f.path("aws", "clusterdeployment.yaml"), cd).unwrap();
    // The chain as mkdocs renders it, kept with the management objects outside the clusters.
    let chain = String::from_utf8(real("k0rdent/clustertemplatechain-update-cluster.yaml"))
        .unwrap()
        .replace(
            "{{{ extra.docsVersionInfo.providerVersions.dashVersions.awsStandaloneCpCluster }}}",
            "1-0-43",
        );
    let p = f.dir.path().join("management/chains.yaml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, chain).unwrap();
    let offered = f.plan("  templates:\n    aws-standalone-cp-0-0-2: aws-standalone-cp-1-0-43\n");
    let r = f.run(&["plan", "--plan", &offered]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(0), "{all}");
    assert!(!all.contains("ClusterTemplateChain"), "{all}");
    let unoffered = f.plan("  templates:\n    aws-standalone-cp-0-0-2: aws-standalone-cp-1-0-44\n");
    let r = f.run(&["plan", "--plan", &unoffered]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(0), "a warning, not a refusal: {all}");
    assert!(
        all.contains("ClusterTemplateChain aws-standalone-cp-1-0-43 (management/chains.yaml:8)")
            && all.contains("offers aws-standalone-cp-1-0-43, not aws-standalone-cp-1-0-44"),
        "{all}"
    );
}

#[test]
fn a_removed_api_in_a_base_the_cluster_pulls_in_from_outside_its_folder_is_refused() {
    let src = "cluster-api/simple-cluster-without-kcp-v1beta1.yaml";
    let f = Fleet::new(&[("capi", src, "cluster.yaml")]);
    let old = with_line(
        &with_line(
            &String::from_utf8(real(src)).unwrap(),
            35,
            "v1.33.0",
            "v1.25.16",
        ),
        79,
        "v1.33.0",
        "v1.25.16",
    );
    std::fs::write(f.path("capi", "cluster.yaml"), &old).unwrap();
    // podinfo's kustomize base, as published, shared from bases/ by the cluster's overlay.
    let base = f.dir.path().join("bases/podinfo");
    std::fs::create_dir_all(&base).unwrap();
    for name in [
        "kustomization.yaml",
        "hpa.yaml",
        "deployment.yaml",
        "service.yaml",
    ] {
        std::fs::write(base.join(name), real(&format!("podinfo/{name}"))).unwrap();
    }
    std::fs::write(
        f.path("capi", "kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - cluster.yaml\n  - ../../bases/podinfo\n  - https://github.com/org/repo//base?ref=v1\n  - ../../../outside\n",
    )
    .unwrap();
    let plan = f.plan("  targetVersion: v1.26.15\n");
    let r = f.run(&["plan", "--plan", &plan]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(2), "{all}");
    assert!(all.contains("bases/podinfo/hpa.yaml:1:13"), "{all}");
    assert!(
        all.contains("HorizontalPodAutoscaler podinfo uses autoscaling/v2beta2"),
        "{all}"
    );
    assert!(
        all.contains("\"../../../outside\" leaves the repository"),
        "{all}"
    );
    // Without the base in the overlay, nothing to refuse.
    std::fs::write(
        f.path("capi", "kustomization.yaml"),
        "resources:\n  - cluster.yaml\n",
    )
    .unwrap();
    let r = f.run(&["plan", "--plan", &plan]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
}

#[test]
fn a_version_the_providers_export_does_not_offer_is_refused() {
    let src = "cluster-api/simple-cluster-without-kcp-v1beta1.yaml";
    let f = Fleet::new(&[("capi", src, "cluster.yaml")]);
    let at_124 = with_line(
        &with_line(
            &String::from_utf8(real(src)).unwrap(),
            35,
            "v1.33.0",
            "v1.24.6",
        ),
        79,
        "v1.33.0",
        "v1.24.6",
    );
    std::fs::write(f.path("capi", "cluster.yaml"), &at_124).unwrap();
    // What `az aks get-versions -o json` prints: the published example's response body.
    let example: Value = serde_json::from_slice(&real("aks/KubernetesVersions_List.json")).unwrap();
    let body = serde_json::to_string_pretty(&example["responses"]["200"]["body"]).unwrap();
    std::fs::create_dir_all(f.dir.path().join("providers")).unwrap();
    std::fs::write(f.dir.path().join("providers/aks-location1.json"), body).unwrap();
    let pv = "  providerVersions:\n    - file: providers/aks-location1.json\n      clusterSelector: {matchLabels: {upgrade-wave: canary}}\n";
    let offered = f.plan(&format!("  targetVersion: v1.25.5\n{pv}"));
    let r = f.run(&["plan", "--plan", &offered]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let unoffered = f.plan(&format!("  targetVersion: v1.25.6\n{pv}"));
    let r = f.run(&["plan", "--plan", &unoffered]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(2), "{all}");
    assert!(all.contains("clusters/capi/cluster.yaml:35:"), "{all}");
    assert!(
        all.contains("providers/aks-location1.json (AKS get-versions export) does not offer Kubernetes v1.25.6")
            && all.contains("1.25.5"),
        "{all}"
    );
    // An export that is not one fleetwave knows is an error at its line of the plan.
    std::fs::write(f.dir.path().join("providers/aks-location1.json"), "{}").unwrap();
    let r = f.run(&["plan", "--plan", &offered]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(2), "{all}");
    assert!(
        all.contains("plans/plan.yaml:") && all.contains("not a known export"),
        "{all}"
    );
}

#[test]
fn with_efficient_upgrades_replaced_workers_skip_minors_the_skew_allows() {
    let src = "cluster-api/simple-cluster-without-kcp-v1beta1.yaml";
    let f = Fleet::new(&[("capi", src, "cluster.yaml")]);
    let file = "clusters/capi/cluster.yaml";
    // 1.33 → 1.36: the control plane (a labelled Machine) takes every minor; the
    // MachineDeployment's machines are replaced, so its workers go once, at the last hop
    // (1.36 is 3 minors above 1.33: the skew holds throughout).
    let plan = f.plan("  targetVersion: v1.36.4\n  efficientUpgrades: true\n");
    let doc = f.plan_json(&plan);
    assert_eq!(
        changes(&doc),
        vec![
            c(1, file, 35, "v1.33.0", "v1.34.9"),
            c(3, file, 35, "v1.34.9", "v1.35.9"),
            c(5, file, 35, "v1.35.9", "v1.36.4"),
            c(6, file, 79, "v1.33.0", "v1.36.4"),
        ]
    );
    let text = f.run(&["plan", "--plan", &plan]).stdout;
    assert!(
        text.contains("MachineDeployment/worker-md-0 skips 1.34, 1.35 (efficientUpgrades"),
        "{text}"
    );
    // Without it, the workers follow every hop.
    let plan = f.plan("  targetVersion: v1.36.4\n");
    assert_eq!(changes(&f.plan_json(&plan)).len(), 6);
}
