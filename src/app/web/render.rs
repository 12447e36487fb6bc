//! The dashboard's HTML. Every string from Git, the state or a cluster goes through maud's
//! escaping (no `PreEscaped` except the compiled-in stylesheet); links carry names only
//! URL-encoded in query strings, and element ids are indices, never names.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Mode, Phase, PlanSnapshot, Query, paginate};
use crate::core::state::{StepState, WaveState};
use crate::core::status::Row;

const STYLE: &str = include_str!("style.css");
/// No script of any kind runs; styles only from the page itself.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn shell(title: &str, mode: Mode, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="Content-Security-Policy" content=(CSP);
                @if let Mode::Live { refresh_secs } = mode {
                    meta http-equiv="refresh" content=(refresh_secs);
                }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// The whole dashboard: every plan (or the one `q.plan` names), its waves and steps, the
/// cluster grid (filtered and paged in live mode) and the audit log.
pub fn page(plans: &[std::sync::Arc<PlanSnapshot>], q: &Query, mode: Mode) -> String {
    let shown: Vec<(usize, &PlanSnapshot)> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| q.plan.as_ref().is_none_or(|n| &p.report.plan == n))
        .map(|(i, p)| (i, p.as_ref()))
        .collect();
    let body = html! {
        header {
            h1 { "fleetwave" }
            p.meta {
                (plans.len()) " plan" @if plans.len() != 1 { "s" }
                @if let Some(t) = plans.iter().map(|p| p.taken_at).max() {
                    " · last tick " (time(t))
                }
                @if let Mode::Live { refresh_secs } = mode {
                    " · this page refreshes every " (refresh_secs) " s · read-only"
                } @else {
                    " · static report"
                }
            }
        }
        @if plans.is_empty() {
            p #empty { "No tick has finished yet: the dashboard shows the rollout after the first one." }
        }
        @if !plans.is_empty() && shown.is_empty() {
            p #empty { "No plan is named " (q.plan.as_deref().unwrap_or("")) "." }
        }
        @for (i, p) in &shown {
            (plan(*i, p, q, mode))
        }
    };
    shell("fleetwave dashboard", mode, body)
}

fn plan(pi: usize, p: &PlanSnapshot, q: &Query, mode: Mode) -> Markup {
    let waves = p.waves();
    html! {
        section.plan id=(format!("plan-{pi}")) {
            h2 {
                "plan " span.name { (p.report.plan) } " "
                span class=(format!("badge st-{}", p.report.status)) { (p.report.status) }
            }
            @if p.paused() {
                p.paused { "Paused: no pull request is opened or merged until "
                    code { "fleetwave resume" } " (the dashboard never pauses or resumes)." }
            }
            @if let Some(r) = &p.report.reason { p.reason { (r) } }
            dl.counts {
                dt { "waves" } dd.waves { (waves.len()) }
                dt { "clusters" } dd.clusters { (p.report.clusters.len()) }
                @for ph in Phase::ALL {
                    dt title=(ph.meaning()) { span class=(format!("dot p-{}", ph.as_str())) {} (ph.as_str()) }
                    dd class=(format!("n-{}", ph.as_str())) {
                        (p.phases.iter().filter(|x| **x == ph).count())
                    }
                }
            }
            (wave_table(p, &waves))
            (grid(pi, p, q, mode))
            (history(p))
            @if mode == Mode::Static {
                h3 { "clusters" }
                @for i in 0..p.report.clusters.len() {
                    (cluster(pi, i, p, mode))
                }
            }
        }
    }
}

fn wave_table(p: &PlanSnapshot, waves: &[(&str, usize)]) -> Markup {
    let state = |name: &str| p.state.waves.iter().find(|w| w.name == name);
    html! {
        table.waves {
            thead { tr { th { "wave" } th { "status" } th { "clusters" } th { "steps" } th { "ETA" } } }
            tbody {
                @for (name, n) in waves {
                    @let ws = state(name);
                    tr {
                        td.wave-name { (name) }
                        td { (ws.map(|w| format!("{:?}", w.status)).unwrap_or_else(|| "Pending".into())) }
                        td { (n) }
                        @let controls = p.report.waves.iter().find(|c| c.wave == *name);
                        td {
                            @if let Some(ws) = ws { (steps(p, ws)) } @else { "not started" }
                            @if let Some(c) = controls { (wave_controls(c)) }
                        }
                        td {
                            @if let Some(t) = p.soak_ends.get(*name) { "soak ends " (time(*t)) }
                            @else if let Some(t) = controls.and_then(|c| c.eta) {
                                span.eta title=(p.report.eta_assumption.as_deref().unwrap_or("")) { (time(t)) }
                            }
                            @else { "—" }
                        }
                    }
                }
            }
        }
    }
}

fn steps(p: &PlanSnapshot, ws: &WaveState) -> Markup {
    html! {
        ol.steps {
            @for s in &ws.steps {
                li {
                    (s.title)
                    @if let Some(b) = s.batch { " (batch " (b) ")" }
                    " — " (format!("{:?}", s.status)) (pr_link(p, s))
                }
            }
        }
    }
}

/// Batches, skipped clusters, the freeze, a closed window and the automatic rollback, as
/// `status` lists them.
fn wave_controls(c: &crate::core::progress::WaveControls) -> Markup {
    html! {
        ul.controls {
            @for b in &c.batches { li.batch { (b) } }
            @for s in &c.skipped { li.skipped { "skipped: " (s) } }
            @if let Some(f) = &c.freeze { li.freeze { "freeze " (f) } }
            @if let Some(w) = &c.next_window { li.window { "window closed; next opens " (time(*w)) } }
            @if let Some(r) = &c.rollback { li.rollback { "automatic rollback: " (r) } }
            @for u in &c.unreachable { li.unreachable { "unreachable: " (u) } }
            @if let Some(m) = &c.maintenance { li.window { "held: " (m) } }
        }
    }
}

fn pr_link(p: &PlanSnapshot, s: &StepState) -> Markup {
    html! {
        @match (s.pr, s.pr.and_then(|n| p.pr_url(n))) {
            (Some(n), Some(url)) => { " " a.pr href=(url) rel="noreferrer" { "#" (n) } }
            (Some(n), None) => { " PR #" (n) }
            _ => { " " code { (s.branch) } }
        }
    }
}

fn cluster_href(pi: usize, i: usize, p: &PlanSnapshot, mode: Mode) -> String {
    match mode {
        Mode::Live { .. } => format!(
            "cluster?plan={}&name={}",
            enc(&p.report.plan),
            enc(&p.report.clusters[i].cluster)
        ),
        Mode::Static => format!("#c-{pi}-{i}"),
    }
}

fn grid(pi: usize, p: &PlanSnapshot, q: &Query, mode: Mode) -> Markup {
    let all: Vec<usize> = (0..p.report.clusters.len()).collect();
    let (rows, size) = match mode {
        Mode::Live { .. } => (p.filter(q), q.size),
        Mode::Static => (all, usize::MAX),
    };
    let (shown, pages) = paginate(&rows, q.page, size);
    let page = q.page.clamp(1, pages);
    html! {
        h3 { "clusters" }
        @if let Mode::Live { .. } = mode { (filters(p, q)) }
        p.shown {
            span.matching { (rows.len()) } " of " (p.report.clusters.len()) " clusters"
            @if pages > 1 { ", page " (page) " of " (pages) }
        }
        div.grid {
            @for i in shown {
                @let r = &p.report.clusters[*i];
                @let ph = p.phases[*i];
                a class=(format!("cell p-{}", ph.as_str())) href=(cluster_href(pi, *i, p, mode))
                    title=(format!("{} · {} · {}", r.cluster, r.wave, r.state)) {
                    span.cname { (r.cluster) }
                }
            }
        }
        @if pages > 1 {
            nav.pager {
                @if page > 1 { a rel="prev" href=(format!("?{}", q.to_query_string(page - 1))) { "← previous" } }
                " page " (page) " of " (pages) " "
                @if page < pages { a rel="next" href=(format!("?{}", q.to_query_string(page + 1))) { "next →" } }
            }
        }
    }
}

fn filters(p: &PlanSnapshot, q: &Query) -> Markup {
    let label = q.label.as_ref().map(|l| match &l.value {
        Some(v) => format!("{}={v}", l.key),
        None => l.key.clone(),
    });
    html! {
        form.filters method="get" action="" {
            input type="hidden" name="plan" value=(p.report.plan);
            label { "wave " select name="wave" {
                option value="" { "all" }
                @for (w, _) in p.waves() {
                    option value=(w) selected[q.wave.as_deref() == Some(w)] { (w) }
                }
            } }
            label { "state " select name="state" {
                option value="" { "all" }
                @for ph in Phase::ALL {
                    option value=(ph.as_str()) selected[q.phase == Some(ph)] { (ph.as_str()) }
                }
            } }
            label { "label " input type="text" name="label" placeholder="key=value" value=[label]; }
            label { "page size " input type="number" name="size" min="1" max=(super::MAX_PAGE_SIZE) value=(q.size); }
            button type="submit" { "filter" }
        }
    }
}

fn history(p: &PlanSnapshot) -> Markup {
    html! {
        h3 { "audit log" }
        @if p.history.is_empty() { p { "No state written yet." } }
        @else {
            table.history {
                thead { tr { th { "when" } th { "commit" } th { "what" } } }
                tbody {
                    @for e in &p.history {
                        tr {
                            td { (time(e.time)) }
                            td { code { (e.commit.get(..10).unwrap_or(&e.commit)) } }
                            td { pre { (e.message.trim_end()) } }
                        }
                    }
                }
            }
        }
    }
}

/// One cluster: versions in Git and running, Flux, gates, drift and the steps that change it.
fn cluster(pi: usize, i: usize, p: &PlanSnapshot, mode: Mode) -> Markup {
    let r = &p.report.clusters[i];
    let ph = p.phases[i];
    let id = match mode {
        Mode::Static => Some(format!("c-{pi}-{i}")),
        Mode::Live { .. } => None,
    };
    html! {
        section.cluster id=[id] {
            h3 {
                "cluster " span.name { (r.cluster) } " "
                span class=(format!("badge p-{}", ph.as_str())) { (ph.as_str()) }
            }
            (facts(p, r))
            (gates(r))
            (cluster_steps(p, r))
        }
    }
}

fn facts(p: &PlanSnapshot, r: &Row) -> Markup {
    let labels = p.labels.get(&r.cluster);
    html! {
        table.detail { tbody {
            tr { th { "plan" } td { (p.report.plan) } }
            tr { th { "wave" } td.wave { (r.wave) } }
            tr { th { "rollout" } td.state { (r.state) } }
            tr { th { "labels" } td.labels {
                @for (k, v) in labels.into_iter().flatten() { code { (k) "=" (v) } " " }
            } }
            tr { th { "in Git" } td.git {
                @for (k, vs) in &r.git { (k) " " code { (vs.join(", ")) } br; }
                @if r.git.is_empty() { "—" }
            } }
            @if p.report.observed {
                tr { th { "running" } td.running {
                    @for x in &r.running { code { (x) } br; }
                    @if r.running.is_empty() { "—" }
                } }
                tr { th { "Flux Ready" } td.flux-ready {
                    @match &r.flux {
                        Some(f) => { (f.ready) " (" (f.kustomizations) " Kustomization"
                            @if f.kustomizations != 1 { "s" } ")" }
                        None => { "no Kustomization observed" }
                    }
                } }
                tr { th { "Flux revision" } td.flux-revision {
                    (r.flux.as_ref().and_then(|f| f.revision.clone()).unwrap_or_else(|| "—".into()))
                } }
                @if let Some(u) = &r.upgrade { tr { th { "upgrade" } td { (u) } } }
                @if let Some(d) = &r.drain { tr { th { "drain" } td { (d) } } }
                @if let Some(apis) = &r.deprecated_apis {
                    tr { th { "deprecated APIs" } td.apis {
                        @if apis.is_empty() { "no deprecated API requested" }
                        @for a in apis { code { (a.to_string()) } br; }
                    } }
                }
            } @else {
                tr { th { "running" } td { "not observed (no cluster source given)" } }
            }
            @if !r.drift.is_empty() { tr.drift { th { "drift" } td { @for d in &r.drift { (d) br; } } } }
        } }
    }
}

fn gates(r: &Row) -> Markup {
    html! {
        @if !r.gates.is_empty() {
            table.gates {
                thead { tr { th { "gate" } th { "result" } th { "reason" } th { "since" } } }
                tbody { @for g in &r.gates {
                    tr class=(if g.ok { "ok" } else { "bad" }) {
                        td { (g.gate) }
                        td { (if g.ok { "ok" } else { "FAILED" }) }
                        td { (g.reason) }
                        td { (g.since.map(time).unwrap_or_else(|| "—".into())) }
                    }
                } }
            }
        }
    }
}

fn cluster_steps(p: &PlanSnapshot, r: &Row) -> Markup {
    let Some(ws) = p.state.waves.iter().find(|w| w.name == r.wave) else {
        return html! { p { "Its wave has not started." } };
    };
    let mine: Vec<&StepState> = ws
        .steps
        .iter()
        .filter(|s| s.changes.is_empty() || s.changes.iter().any(|c| c.cluster == r.cluster))
        .collect();
    html! {
        table.steps {
            thead { tr { th { "step" } th { "status" } th { "pull request" } th { "converged here" } } }
            tbody { @for s in mine {
                tr {
                    td { (s.title) }
                    td { (format!("{:?}", s.status)) }
                    td { (pr_link(p, s)) }
                    td { (s.converged.get(&r.cluster).map(|t| time(*t)).unwrap_or_else(|| "—".into())) }
                }
            } }
        }
    }
}

/// The page of one cluster of one plan (live mode); None when the plan has no such cluster.
pub fn cluster_page(p: &PlanSnapshot, name: &str, refresh_secs: u64) -> Option<String> {
    let i = p.report.clusters.iter().position(|r| r.cluster == name)?;
    let mode = Mode::Live { refresh_secs };
    let back = format!("./?plan={}", enc(&p.report.plan));
    let body = html! {
        header {
            h1 { a href=(back) { "fleetwave" } }
            p.meta { "last tick " (time(p.taken_at)) " · read-only" }
        }
        (cluster(0, i, p, mode))
    };
    Some(shell(&format!("{name} · fleetwave"), mode, body))
}

/// The answer to a cluster page whose plan or cluster the last tick did not see.
pub fn not_found(plan: Option<&str>, name: &str) -> String {
    let body = html! {
        header { h1 { a href="./" { "fleetwave" } } }
        p #empty {
            "No cluster " code { (name) }
            @if let Some(p) = plan { " in plan " code { (p) } }
            " in the last tick."
        }
    };
    shell("not found · fleetwave", Mode::Static, body)
}
