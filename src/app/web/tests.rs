//! The renderer without a browser: escaping, pages, filters, phases, links.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};

use super::*;
use crate::core::state::{ChangeRecord, Changed, StepState};
use crate::core::status::{Flux, Gate, Row};

const EVIL: &str = "<script>alert(1)</script>";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 5, 0, 0).single().unwrap()
}

fn row(wave: &str, cluster: &str) -> Row {
    Row {
        wave: wave.into(),
        cluster: cluster.into(),
        state: "InProgress, 0/1 merged steps converged".into(),
        git: BTreeMap::from([("kubernetes".to_string(), vec!["v1.33.5".to_string()])]),
        running: vec!["KubeadmControlPlane ns/x v1.32.4".into()],
        flux: Some(Flux {
            ready: "True ReconciliationSucceeded".into(),
            revision: Some("0123456789".into()),
            kustomizations: 2,
        }),
        upgrade: Some("done".into()),
        gates: vec![],
        drift: vec![],
        drain: None,
        drain_blockers: vec![],
        deprecated_apis: None,
    }
}

fn change(cluster: &str) -> ChangeRecord {
    ChangeRecord {
        cluster: cluster.into(),
        file: "f.yaml".into(),
        field: "spec.version".into(),
        what: Changed::Kubernetes(None),
        from: "v1.32.4".into(),
        to: "v1.33.5".into(),
    }
}

/// `n` clusters in wave `canary` (first two) and `prod`; canary's step converged on c0.
fn snapshot(n: usize) -> PlanSnapshot {
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let rows: Vec<Row> = names
        .iter()
        .enumerate()
        .map(|(i, c)| row(if i < 2 { "canary" } else { "prod" }, c))
        .collect();
    let mut state = PlanState::new("k8s", "h");
    state.status = PlanStatus::InProgress;
    state.waves.push(WaveState {
        name: "canary".into(),
        status: WaveStatus::InProgress,
        clusters: names[..2.min(n)].to_vec(),
        steps: vec![StepState {
            title: "control planes".into(),
            branch: "fleetwave/k8s/canary/1".into(),
            status: StepStatus::Merged,
            pr: Some(42),
            merged_commit: Some("abc".into()),
            changes: names[..2.min(n)]
                .iter()
                .map(|c| change(c))
                .collect::<Vec<_>>()
                .into(),
            converged: BTreeMap::from([("c0".to_string(), t0())]),
            ..Default::default()
        }],
        ..Default::default()
    });
    let labels: Labels = names
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let team = if i % 2 == 0 { "payments" } else { "search" };
            (
                c.clone(),
                BTreeMap::from([("team".to_string(), team.to_string())]),
            )
        })
        .collect();
    let report = Report {
        plan: "k8s".into(),
        status: "InProgress".into(),
        reason: None,
        observed: true,
        clusters: rows,
        waves: Vec::new(),
        eta_assumption: None,
    };
    PlanSnapshot::new(
        report,
        state,
        &BTreeMap::new(),
        Arc::new(labels),
        vec![AuditEntry {
            time: t0(),
            commit: "0123456789abcdef".into(),
            message: "fleetwave: k8s tick 1\n\nwave canary started".into(),
        }],
        Some("https://github.com/acme/fleet".into()),
        t0(),
    )
}

fn live() -> Mode {
    Mode::Live { refresh_secs: 10 }
}

fn q(pairs: &[(&str, &str)]) -> Query {
    Query::from_pairs(pairs.iter().copied())
}

#[test]
fn strings_from_git_and_clusters_are_escaped_everywhere() {
    let mut s = snapshot(3);
    s.report.clusters[1].cluster = EVIL.into();
    s.report.clusters[1].wave = format!("canary{EVIL}");
    s.report.clusters[1].gates.push(Gate {
        gate: "http".into(),
        ok: false,
        reason: format!("body said {EVIL} & \"quoted\""),
        since: None,
    });
    s.report.reason = Some(EVIL.into());
    Arc::make_mut(&mut s.labels).insert(
        EVIL.into(),
        BTreeMap::from([("x".to_string(), EVIL.to_string())]),
    );
    s.history[0].message = EVIL.into();
    let s = Arc::new(s);
    for html in [
        render::page(std::slice::from_ref(&s), &Query::default(), live()),
        render::page(std::slice::from_ref(&s), &Query::default(), Mode::Static),
        render::cluster_page(&s, EVIL, 10).expect("the cluster's page"),
    ] {
        assert!(!html.contains("<script"), "unescaped: {html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }
    // The name reaches links only URL-encoded.
    let page = render::page(&[s], &Query::default(), live());
    assert!(
        page.contains("cluster?plan=k8s&amp;name=%3Cscript%3Ealert%281%29%3C%2Fscript%3E"),
        "{page}"
    );
}

#[test]
fn the_page_forbids_scripts_and_refreshes_only_when_live() {
    let s = Arc::new(snapshot(3));
    let live_page = render::page(std::slice::from_ref(&s), &Query::default(), live());
    assert!(live_page.contains(r#"<meta http-equiv="refresh" content="10">"#));
    assert!(live_page.contains("default-src 'none'"));
    let static_page = render::page(&[s], &Query::default(), Mode::Static);
    assert!(!static_page.contains("http-equiv=\"refresh\""));
    assert!(static_page.contains("default-src 'none'"));
}

#[test]
fn the_grid_is_paged_and_the_pager_keeps_the_filters() {
    let s = snapshot(1201);
    let rows = s.filter(&Query::default());
    assert_eq!(rows.len(), 1201);
    let (page, pages) = paginate(&rows, 3, 500);
    assert_eq!((page.len(), pages), (201, 3));
    assert_eq!(page[0], 1000);
    // Out of range: the last page; an empty list still has one page.
    assert_eq!(paginate(&rows, 9, 500).0.len(), 201);
    assert_eq!(paginate(&[], 1, 500), (&[][..], 1));

    let query = q(&[("wave", "prod"), ("label", "team=search"), ("page", "2")]);
    let html = render::page(&[Arc::new(s)], &query, live());
    // 1199 prod clusters, every other one in team search: 599 (c3, c5, …, c1199).
    assert!(
        html.contains(r#"<span class="matching">599</span> of 1201"#),
        "{html}"
    );
    assert!(html.contains("page 2 of 2"), "{html}");
    assert_eq!(html.matches("class=\"cell ").count(), 99);
    assert!(
        html.contains("?wave=prod&amp;label=team%3Dsearch&amp;page=1"),
        "the previous link keeps the filters"
    );
}

#[test]
fn filters_by_wave_label_and_state() {
    let s = snapshot(6);
    let names = |q: &Query| -> Vec<String> {
        s.filter(q)
            .into_iter()
            .map(|i| s.report.clusters[i].cluster.clone())
            .collect()
    };
    assert_eq!(names(&q(&[("wave", "canary")])), ["c0", "c1"]);
    assert_eq!(names(&q(&[("label", "team=payments")])), ["c0", "c2", "c4"]);
    assert_eq!(names(&q(&[("label", "team")])).len(), 6);
    assert!(names(&q(&[("label", "nope")])).is_empty());
    assert_eq!(names(&q(&[("state", "converged")])), ["c0"]);
    assert_eq!(names(&q(&[("state", "in-progress")])), ["c1"]);
    assert_eq!(names(&q(&[("state", "pending")])), ["c2", "c3", "c4", "c5"]);
    // Nonsense is no filter, not an error page.
    let odd = q(&[
        ("page", "x"),
        ("size", "0"),
        ("state", "bogus"),
        ("wave", " "),
    ]);
    assert_eq!(
        (odd.page, odd.size, odd.phase, odd.wave),
        (1, 1, None, None)
    );
    assert_eq!(q(&[("size", "999999")]).size, MAX_PAGE_SIZE);
}

#[test]
fn phases_follow_the_state() {
    let step = |status, converged: &[&str], changes: &[&str]| StepState {
        status,
        converged: converged.iter().map(|c| (c.to_string(), t0())).collect(),
        changes: changes.iter().map(|c| change(c)).collect::<Vec<_>>().into(),
        ..Default::default()
    };
    let wave = |status, steps| WaveState {
        status,
        steps,
        ..Default::default()
    };
    assert_eq!(phase(None, "a"), Phase::Pending);
    let w = wave(
        WaveStatus::InProgress,
        vec![step(StepStatus::Merged, &["a"], &["a", "b"])],
    );
    assert_eq!(phase(Some(&w), "a"), Phase::Converged);
    assert_eq!(phase(Some(&w), "b"), Phase::InProgress);
    // No step changes c: already at the target.
    assert_eq!(phase(Some(&w), "c"), Phase::Skipped);
    let w = wave(
        WaveStatus::Soaking,
        vec![step(StepStatus::Merged, &["a"], &["a"])],
    );
    assert_eq!(phase(Some(&w), "a"), Phase::Soaking);
    let mut w = wave(
        WaveStatus::Failed,
        vec![step(StepStatus::Merged, &[], &["a"])],
    );
    w.failed.insert("a".into(), "health check failed".into());
    assert_eq!(phase(Some(&w), "a"), Phase::Failed);
    let w = wave(
        WaveStatus::Succeeded,
        vec![step(StepStatus::Converged, &["a"], &["a"])],
    );
    assert_eq!(phase(Some(&w), "a"), Phase::Converged);
    // A pending step without recorded changes concerns every cluster of the wave.
    let w = wave(
        WaveStatus::InProgress,
        vec![step(StepStatus::Pending, &[], &[])],
    );
    assert_eq!(phase(Some(&w), "z"), Phase::InProgress);
}

#[test]
fn the_cluster_page_shows_versions_flux_gates_and_pull_requests() {
    let mut s = snapshot(3);
    s.report.clusters[0].gates.push(Gate {
        gate: "prometheus".into(),
        ok: false,
        reason: "alert KubeAPIDown firing".into(),
        since: Some(t0()),
    });
    let html = render::cluster_page(&s, "c0", 10).unwrap();
    for want in [
        "v1.33.5",
        "KubeadmControlPlane ns/x v1.32.4",
        "True ReconciliationSucceeded (2 Kustomizations)",
        "0123456789",
        "alert KubeAPIDown firing",
        r#"href="https://github.com/acme/fleet/pull/42""#,
        "team=payments",
        "2026-12-05 05:00:00 UTC",
    ] {
        assert!(html.contains(want), "no {want:?} in {html}");
    }
    assert!(render::cluster_page(&s, "nope", 10).is_none());
}

#[test]
fn the_static_report_holds_every_cluster_and_links_inside_itself() {
    let s = Arc::new(snapshot(700));
    let html = render::page(&[s], &Query::default(), Mode::Static);
    assert_eq!(
        html.matches("class=\"cell ").count(),
        700,
        "no paging in a file"
    );
    assert!(html.contains(r##"href="#c-0-699""##));
    assert!(html.contains(r#"id="c-0-699""#));
    assert!(!html.contains("cluster?plan="), "no link to the service");
    assert!(!html.contains("<form"), "no filter form in a file");
}

#[test]
fn paused_plans_say_so_and_soaking_waves_show_when_they_end() {
    let mut s = snapshot(3);
    s.state.status = PlanStatus::Paused;
    s.report.status = "Paused".into();
    s.state.waves[0].status = WaveStatus::Soaking;
    s.state.waves[0].soak_started_at = Some(t0());
    let soaks = BTreeMap::from([("canary".to_string(), std::time::Duration::from_secs(3600))]);
    let s = PlanSnapshot::new(
        s.report, s.state, &soaks, s.labels, s.history, s.web, s.taken_at,
    );
    assert_eq!(s.soak_ends["canary"], t0() + chrono::Duration::hours(1));
    let html = render::page(&[Arc::new(s)], &Query::default(), live());
    assert!(
        html.contains("Paused: no pull request is opened or merged"),
        "{html}"
    );
    assert!(html.contains("soak ends 2026-12-05 06:00:00 UTC"), "{html}");
}

#[test]
fn web_addresses_come_from_forge_remotes_only() {
    assert_eq!(
        web_address("https://github.com/Acme/fleet.git").as_deref(),
        Some("https://github.com/Acme/fleet")
    );
    assert_eq!(
        web_address("git@ghe.example.com:acme/fleet.git").as_deref(),
        Some("https://ghe.example.com/acme/fleet")
    );
    assert_eq!(web_address("/tmp/x/fleet.git"), None);
    assert_eq!(web_address("fleet.git"), None);
}

#[test]
fn the_board_keeps_the_last_snapshot_of_each_plan() {
    let b = Board::default();
    assert!(b.get().is_empty());
    b.put(snapshot(2));
    let mut later = snapshot(3);
    later.taken_at = t0() + chrono::Duration::minutes(5);
    b.put(later);
    let plans = b.get();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].report.clusters.len(), 3);
}

/// A plan with wave controls shows each wave's batches, skipped clusters, freeze and ETA
/// (with its assumption as the title) in the waves table, and each step's batch.
#[test]
fn the_waves_table_shows_batches_skipped_clusters_the_freeze_and_the_eta() {
    let mut s = snapshot(4);
    s.state.waves[0].steps[0].batch = Some(1);
    let eta = Utc.with_ymd_and_hms(2026, 11, 23, 20, 0, 0).unwrap();
    s.report.waves.push(crate::core::progress::WaveControls {
        wave: "canary".into(),
        batches: vec![
            "batch 0 (c0): converged".into(),
            "batch 1 (c1): open".into(),
        ],
        skipped: vec!["c1 by bob at 2026-11-23 08:00 UTC: decommissioned".into()],
        freeze: Some("next: 2026-11-23 13:00 to 2026-11-23 19:00 UTC: CAB".into()),
        next_window: None,
        rollback: None,
        unreachable: vec!["c1 since 2026-11-23 08:10 UTC; skipped at 08:40".into()],
        maintenance: Some("outside maintenance windows: c0 opens 22:00".into()),
        eta: Some(eta),
    });
    s.report.eta_assumption = Some("each step converges in 10m".into());
    let html = render::page(&[Arc::new(s)], &Query::default(), Mode::Static);
    let table = &html[html.find("<table class=\"waves\"").expect(&html)..];
    let table = &table[..table.find("</table>").unwrap()];
    for want in [
        "control planes (batch 1) — Merged",
        "<li class=\"batch\">batch 0 (c0): converged</li>",
        "<li class=\"skipped\">skipped: c1 by bob at 2026-11-23 08:00 UTC: decommissioned</li>",
        "<li class=\"freeze\">freeze next: 2026-11-23 13:00 to 2026-11-23 19:00 UTC: CAB</li>",
        "<span class=\"eta\" title=\"each step converges in 10m\">2026-11-23 20:00:00 UTC</span>",
        "<li class=\"unreachable\">unreachable: c1 since 2026-11-23 08:10 UTC; skipped at 08:40</li>",
        "<li class=\"window\">held: outside maintenance windows: c0 opens 22:00</li>",
    ] {
        assert!(table.contains(want), "{want} not in {table}");
    }
}
