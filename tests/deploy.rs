//! deploy/ (kustomize), deploy/monitoring and the Helm chart (charts/fleetwave): the release
//! image at the crate's version, a pod that matches the image, probes on paths `serve`
//! answers, alerts and panels on series `serve` exports, and a chart that renders the same
//! objects as deploy/ (with Helm when it is installed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn have(cmd: &str) -> bool {
    Command::new("bash")
        .args(["-c", "command -v \"$1\" >/dev/null", "_", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args(c: &Value) -> Vec<String> {
    c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// What must hold of fleetwave's Deployment, from kustomize or from Helm.
fn check_deployment(d: &Value, from: &str) {
    let pod = &d["spec"]["template"]["spec"];
    let c = container(d);
    assert_eq!(
        c["image"].as_str(),
        Some(format!("ghcr.io/fleetwave/fleetwave:{VERSION}").as_str()),
        "{from}: the release image at the crate's version"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{from}");
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{from}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{from}"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{from}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{from}");
    assert_eq!(sc["runAsNonRoot"], true, "{from}");
    assert_eq!(sc["runAsUser"], 65532, "{from}");
    assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{from}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{from}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{from}: {probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{from}: {probe}");
    }
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    for k in ["requests", "limits"] {
        assert!(
            c["resources"][k]["memory"].is_string(),
            "{from}: resources.{k}.memory"
        );
    }
    assert!(c["resources"]["requests"]["cpu"].is_string(), "{from}");
    // The only writable places: the cache (where --cache points) and /tmp, both emptyDirs.
    let mounts: BTreeMap<String, String> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for path in ["/var/cache/fleetwave", "/tmp"] {
        let name = mounts
            .get(path)
            .unwrap_or_else(|| panic!("{from}: nothing mounted at {path}"));
        let vol = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name.as_str())
            .unwrap();
        assert!(
            vol["emptyDir"].is_mapping(),
            "{from}: {path} is an emptyDir"
        );
    }
    let a = args(c);
    assert_eq!(a[0], "serve", "{from}");
    assert!(
        a.contains(&"--listen=0.0.0.0:8080".to_string()),
        "{from}: {a:?}"
    );
    assert!(
        a.iter()
            .any(|x| x.starts_with("--cache=/var/cache/fleetwave/")),
        "{from}: {a:?}"
    );
    // Replicas share the plans through a Lease per plan; each needs its identity.
    assert_eq!(d["spec"]["replicas"], 3, "{from}");
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate", "{from}");
    assert!(
        a.iter().any(|x| x.starts_with("--lease-namespace=")),
        "{from}: {a:?}"
    );
    assert!(
        a.contains(&"--identity=$(POD_NAME)".to_string()),
        "{from}: {a:?}"
    );
    let pod_name = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .unwrap_or_else(|| panic!("{from}: no POD_NAME"));
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
        "{from}"
    );
}

/// Leader election: a Role on Leases only, in fleetwave's namespace, bound to its account.
fn check_lease_rbac(docs: &[Value], from: &str) {
    let role = of_kind(docs, "Role");
    assert_eq!(role["metadata"]["namespace"], "fleetwave-system", "{from}");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "{from}");
    assert_eq!(rules[0]["apiGroups"][0], "coordination.k8s.io", "{from}");
    assert_eq!(rules[0]["resources"][0], "leases", "{from}");
    let verbs: BTreeSet<&str> = rules[0]["verbs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        verbs,
        BTreeSet::from(["get", "list", "create", "update", "delete"]),
        "{from}"
    );
    let binding = of_kind(docs, "RoleBinding");
    assert_eq!(
        binding["roleRef"]["name"], role["metadata"]["name"],
        "{from}"
    );
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount", "{from}");
}

fn check_pdb_and_network_policy(docs: &[Value], from: &str) {
    let pdb = of_kind(docs, "PodDisruptionBudget");
    assert_eq!(
        pdb["spec"]["maxUnavailable"], 1,
        "{from}: a drain is never blocked"
    );
    assert_eq!(
        pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow",
        "{from}"
    );
    let np = of_kind(docs, "NetworkPolicy");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 8080, "{from}");
    let egress: BTreeSet<i64> = np["spec"]["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_sequence().unwrap().iter())
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    for port in [53, 443, 6443, 22] {
        assert!(egress.contains(&port), "{from}: egress {port}");
    }
    // Both select the Deployment's pods.
    let d = of_kind(docs, "Deployment");
    let pod_labels = d["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .unwrap();
    for sel in [
        &pdb["spec"]["selector"]["matchLabels"],
        &np["spec"]["podSelector"]["matchLabels"],
    ] {
        for (k, v) in sel.as_mapping().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v), "{from}: selector {k:?}");
        }
    }
}

#[test]
fn serve_answers_the_probe_paths() {
    let serve = read("src/app/serve.rs");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            serve.contains(&format!(".route(\"{path}\"")),
            "src/app/serve.rs does not route {path}"
        );
    }
}

#[test]
fn deploy_runs_the_release_image_at_the_crate_version() {
    let d = yaml("deploy/deployment.yaml");
    check_deployment(&d, "deploy/deployment.yaml");
    let k = yaml("deploy/kustomization.yaml");
    let img = &k["images"][0];
    assert_eq!(img["name"], "ghcr.io/fleetwave/fleetwave");
    assert_eq!(
        img["newTag"].as_str(),
        Some(VERSION),
        "kustomization.yaml images: newTag"
    );
    let resources: Vec<&str> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let mut all = Vec::new();
    for r in &resources {
        assert!(root().join("deploy").join(r).is_file(), "deploy/{r}");
        all.extend(docs(&read(&format!("deploy/{r}"))));
    }
    check_pdb_and_network_policy(&all, "deploy/");
    let chart = yaml("charts/fleetwave/Chart.yaml");
    assert_eq!(
        chart["version"].as_str(),
        Some(VERSION),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(VERSION),
        "Chart.yaml appVersion"
    );
}

#[test]
fn kustomize_renders_deploy_and_monitoring() {
    if !have("kubectl") {
        eprintln!("skipped: kubectl is not installed (kubectl kustomize renders deploy/)");
        return;
    }
    let render = |dir: &str| {
        let out = Command::new("kubectl")
            .args(["kustomize", dir])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        docs(&String::from_utf8(out.stdout).unwrap())
    };
    let base = render("deploy");
    check_deployment(of_kind(&base, "Deployment"), "kubectl kustomize deploy");
    check_pdb_and_network_policy(&base, "kubectl kustomize deploy");
    check_lease_rbac(&base, "kubectl kustomize deploy");
    let mon = render("deploy/monitoring");
    for kind in ["PrometheusRule", "ServiceMonitor", "ConfigMap"] {
        of_kind(&mon, kind);
    }
    let cm = of_kind(&mon, "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dash = cm["data"]["fleetwave-dashboard.json"].as_str().unwrap();
    assert_eq!(dash, read("deploy/monitoring/fleetwave-dashboard.json"));
}

// ---------------------------------------------------------------------------------------
// Monitoring

/// The series `serve` exports, read from its registrations: counters get `_total`, the
/// seconds histogram `_seconds_bucket`, `_seconds_sum` and `_seconds_count`.
fn exported_series() -> BTreeSet<String> {
    let serve = read("src/app/serve.rs");
    let reg = regex::Regex::new(
        r#"register(_with_unit)?\(\s*"(fleetwave_[a-z_]+)",\s*"[^"]*",\s*(Unit::Seconds,\s*)?([a-z_]+)\.clone\(\)"#,
    )
    .unwrap();
    // The metric fields' types, from `struct Metrics { … }`.
    let fields = &serve[serve
        .find("struct Metrics {")
        .expect("struct Metrics in serve.rs")..];
    let fields = &fields[..fields.find("\n}").unwrap()];
    let mut out = BTreeSet::new();
    for c in reg.captures_iter(&serve) {
        let name = c[2].to_string();
        let field = &c[4];
        let ty = regex::Regex::new(&format!(r"\n\s*{field}: ([^\n]+),\n"))
            .unwrap()
            .captures(fields)
            .unwrap_or_else(|| panic!("type of {field}"))[1]
            .to_string();
        let unit = if c.get(3).is_some() { "_seconds" } else { "" };
        if ty.contains("Counter") {
            out.insert(format!("{name}{unit}_total"));
        } else if ty.contains("Histogram") {
            for s in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{unit}{s}"));
            }
        } else {
            out.insert(format!("{name}{unit}"));
        }
    }
    assert!(
        out.len() >= 8,
        "registrations not found in serve.rs: {out:?}"
    );
    out
}

fn series_in(expr: &str) -> Vec<String> {
    regex::Regex::new(r"fleetwave_[a-z_]+")
        .unwrap()
        .find_iter(expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn alerts_and_panels_use_only_series_serve_exports() {
    let exported = exported_series();
    eprintln!("exported: {exported:?}");
    let rule = yaml("deploy/monitoring/prometheusrule.yaml");
    let mut alerts = BTreeSet::new();
    for g in rule["spec"]["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            let found = series_in(expr);
            assert!(!found.is_empty(), "{expr}");
            for s in found {
                assert!(
                    exported.contains(&s),
                    "alert {:?}: {s} is not exported",
                    r["alert"]
                );
            }
            for label in ["result", "status"] {
                // Label values fleetwave writes.
                for v in regex::Regex::new(&format!(r#"{label}=~?"([^"]+)""#))
                    .unwrap()
                    .captures_iter(expr)
                {
                    for v in v[1].split('|') {
                        assert!(
                            [
                                "ok",
                                "held",
                                "error",
                                "InProgress",
                                "Succeeded",
                                "Failed",
                                "Halted",
                                "Paused",
                                "Pending",
                                "Soaking"
                            ]
                            .contains(&v),
                            "{expr}: {label}={v}"
                        );
                    }
                }
            }
            alerts.insert(r["alert"].as_str().unwrap().to_string());
        }
    }
    for want in [
        "FleetwaveRolloutHalted",
        "FleetwaveRolloutHeld",
        "FleetwaveGateFailed",
        "FleetwaveTickErrors",
        "FleetwaveApiCallsHigh",
    ] {
        assert!(alerts.contains(want), "alert {want}");
    }
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/monitoring/fleetwave-dashboard.json")).unwrap();
    let mut used = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            for s in series_in(t["expr"].as_str().unwrap()) {
                assert!(
                    exported.contains(&s),
                    "panel {}: {s} is not exported",
                    p["title"]
                );
                used.insert(s);
            }
        }
    }
    for s in [
        "fleetwave_plan_status",
        "fleetwave_wave_status",
        "fleetwave_ticks_total",
    ] {
        assert!(used.contains(s), "the dashboard shows {s}");
    }
}

#[test]
fn promtool_checks_the_rules_and_each_alert_fires_when_it_should() {
    if !have("promtool") {
        eprintln!(
            "skipped: promtool is not installed (Debian package prometheus; .ci/run installs it)"
        );
        return;
    }
    for args in [
        [
            "check",
            "rules",
            "charts/fleetwave/files/prometheus-rules.yaml",
        ],
        ["test", "rules", "tests/monitoring/alerts_test.yaml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a unit test.
    let tests = read("tests/monitoring/alerts_test.yaml");
    let rule = yaml("deploy/monitoring/prometheusrule.yaml");
    for r in rule["spec"]["groups"][0]["rules"].as_sequence().unwrap() {
        let name = r["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "tests/monitoring/alerts_test.yaml does not test {name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The Helm chart

#[test]
fn the_chart_ships_the_same_rules_and_dashboard_as_deploy() {
    assert_eq!(
        read("charts/fleetwave/files/fleetwave-dashboard.json"),
        read("deploy/monitoring/fleetwave-dashboard.json"),
        "copy deploy/monitoring/fleetwave-dashboard.json to charts/fleetwave/files/"
    );
    let rules = yaml("charts/fleetwave/files/prometheus-rules.yaml");
    assert_eq!(
        rules,
        yaml("deploy/monitoring/prometheusrule.yaml")["spec"],
        "charts/fleetwave/files/prometheus-rules.yaml is the spec of deploy/monitoring/prometheusrule.yaml"
    );
}

/// The chart rendered with `values`, by the helm binary or by Helm's Go SDK through
/// helm-python-sdk (tools/helm/render.py); `Err` says why neither is available.
fn helm_render(values: &serde_json::Value) -> Result<(Vec<Value>, String), String> {
    let chart = root().join("charts/fleetwave");
    let vals = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(vals.path(), values.to_string()).unwrap();
    if have("helm") {
        let lint = Command::new("helm")
            .args(["lint", "--strict", "-n", "fleetwave-system", "-f"])
            .arg(vals.path())
            .arg(&chart)
            .output()
            .unwrap();
        assert!(
            lint.status.success(),
            "helm lint --strict: {}",
            String::from_utf8_lossy(&lint.stdout)
        );
        let out = Command::new("helm")
            .args(["template", "fleetwave", "-n", "fleetwave-system", "-f"])
            .arg(vals.path())
            .arg(&chart)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok((docs(&String::from_utf8(out.stdout).unwrap()), "helm".into()));
    }
    let python = if have("python3") {
        "python3"
    } else {
        return Err("neither helm nor python3 is installed".into());
    };
    let out = Command::new(python)
        .arg(root().join("tools/helm/render.py"))
        .arg(&chart)
        .arg(values.to_string())
        .output()
        .unwrap();
    if out.status.code() == Some(3) {
        return Err(format!(
            "helm is not installed and {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    assert!(
        out.status.success(),
        "tools/helm/render.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<String> = r["lint"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
        .map(|m| m.to_string())
        .chain(
            r["lint"]["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.to_string()),
        )
        .collect();
    assert!(
        errors.is_empty(),
        "helm lint --strict:\n{}",
        errors.join("\n")
    );
    let mut all = Vec::new();
    for (path, text) in r["manifests"].as_object().unwrap() {
        if path.ends_with(".yaml") {
            all.extend(docs(text.as_str().unwrap()));
        }
    }
    Ok((
        all,
        format!(
            "Helm SDK {} (helm-python-sdk)",
            r["helm"].as_str().unwrap_or("?")
        ),
    ))
}

#[test]
fn the_helm_chart_lints_and_renders_what_deploy_holds() {
    let (objs, by) = match helm_render(&serde_json::json!({})) {
        Ok(r) => r,
        Err(why) => {
            eprintln!(
                "skipped: {why}; .ci/run installs helm-python-sdk (tools/ci-requirements.txt)"
            );
            return;
        }
    };
    eprintln!("rendered by {by}");
    let from = format!("charts/fleetwave ({by})");
    let d = of_kind(&objs, "Deployment");
    check_deployment(d, &from);
    check_pdb_and_network_policy(&objs, &from);
    check_lease_rbac(&objs, &from);
    // Without a plan the chart runs every plan of the plans folder.
    assert!(
        args(container(d)).contains(&"--plans-dir=plans".to_string()),
        "{from}"
    );
    // The same container as deploy/, apart from how arguments are passed (kustomize takes
    // them from a ConfigMap) and the labels.
    let ours = yaml("deploy/deployment.yaml");
    for k in [
        "securityContext",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "ports",
        "volumeMounts",
    ] {
        assert_eq!(
            container(d)[k],
            container(&ours)[k],
            "{from}: container {k}"
        );
    }
    for k in [
        "securityContext",
        "volumes",
        "terminationGracePeriodSeconds",
    ] {
        assert_eq!(
            d["spec"]["template"]["spec"][k], ours["spec"]["template"]["spec"][k],
            "{from}: pod {k}"
        );
    }
    let rbac = docs(&read("deploy/rbac.yaml"));
    assert_eq!(
        of_kind(&objs, "ClusterRole")["rules"],
        of_kind(&rbac, "ClusterRole")["rules"],
        "{from}: the same read-only rules"
    );
    let svc = of_kind(&objs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    for kind in ["PrometheusRule", "ServiceMonitor", "ConfigMap"] {
        assert!(
            !objs.iter().any(|o| o["kind"] == kind),
            "{kind} is off by default"
        );
    }

    // Everything switched on: a GitHub App, an SSH deploy key, per-cluster contexts, monitoring.
    let (objs, _) = helm_render(&serde_json::json!({
        "image": {"tag": "9.9.9"},
        "fleet": {"remote": "git@github.com:acme/fleet.git", "plansDir": "rollouts/", "plan": "k8s-1-34.yaml"},
        "forge": {"approvers": ["alice"], "approverTeams": ["acme/platform"], "checkRuns": true},
        "github": {"app": {"id": 12345, "existingSecret": "fleetwave-app"}},
        "git": {"sshKey": {"existingSecret": "fleetwave-ssh"}},
        "kube": {"clusterContext": "admin@{cluster}", "kubeconfigSecret": "fleet-kubeconfig"},
        "monitoring": {"serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}, "dashboard": {"enabled": true}},
        "networkPolicy": {"egressPorts": [443, 8443]}
    }))
    .unwrap();
    let d = of_kind(&objs, "Deployment");
    let c = container(d);
    assert_eq!(c["image"], "ghcr.io/fleetwave/fleetwave:9.9.9");
    let a = args(c);
    for want in [
        "--remote=git@github.com:acme/fleet.git",
        "--plan=rollouts/k8s-1-34.yaml",
        "--approver=alice",
        "--approver-team=acme/platform",
        "--check-runs",
        "--cluster-context=admin@{cluster}",
    ] {
        assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
    }
    let env: BTreeMap<String, Value> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(env["FLEETWAVE_GITHUB_APP_ID"]["value"], "12345");
    assert_eq!(
        env["FLEETWAVE_GITHUB_APP_KEY"]["value"],
        "/etc/fleetwave/github-app/private-key.pem"
    );
    assert_eq!(
        env["FLEETWAVE_SSH_KEY"]["value"],
        "/etc/fleetwave/ssh/ssh-privatekey"
    );
    assert_eq!(env["KUBECONFIG"]["value"], "/etc/fleetwave/kube/config");
    assert_eq!(
        env["GITHUB_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"],
        true
    );
    let rule = of_kind(&objs, "PrometheusRule");
    assert_eq!(
        rule["spec"],
        yaml("deploy/monitoring/prometheusrule.yaml")["spec"],
        "the alerts' own {{{{ $labels }}}} templates survive Helm"
    );
    of_kind(&objs, "ServiceMonitor");
    let cm = of_kind(&objs, "ConfigMap");
    let dash: serde_json::Value =
        serde_json::from_str(cm["data"]["fleetwave-dashboard.json"].as_str().unwrap()).unwrap();
    assert_eq!(dash["uid"], "fleetwave");
    let np = of_kind(&objs, "NetworkPolicy");
    assert_eq!(np["spec"]["egress"][1]["ports"][1]["port"], 8443);
}
