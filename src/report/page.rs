//! The report's pages as maud templates. maud escapes every value spliced
//! in with `( )`; only the charts, which plotters escaped as it wrote them,
//! go in as `PreEscaped`.

use std::collections::BTreeMap;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::charts::{
    self, Drawn, Event, LinesOverTime, Reference, Series, TrialPoint, VersionPoint,
};
use super::{
    epoch, higher_is_better, metric_of, minute, next_run, page_name, short, OverviewData,
    ProjectData,
};
use crate::ml::diagnostics::{Diagnostics, Example, MAX_CONFUSION_CLASSES};
use crate::ml::drift::{BinShare, Thresholds};

/// Features drawn in colour in the drift charts (the rest in grey).
const HIGHLIGHTED_FEATURES: usize = 6;
/// Features whose distributions are drawn, the most drifted first.
const DISTRIBUTIONS: usize = 3;
/// Events listed in the timeline's table at most (the newest).
const TIMELINE_ROWS: usize = 60;
/// Trials listed in the leaderboard table at most.
const LEADERBOARD_ROWS: usize = 15;

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1b1b1b; background: #f6f6f4; }
header.top { background: #10324a; color: #fff; padding: 1rem 1.25rem; }
header.top h1 { margin: 0; font-size: 1.5rem; overflow-wrap: anywhere; }
header.top p { margin: .25rem 0 0; color: #d8e4ee; }
main { max-width: 1040px; margin: 0 auto; padding: 1rem; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem 1.25rem; margin: 0 0 1rem; }
section > h2 { margin: 0 0 .5rem; font-size: 1.25rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .25rem; overflow-wrap: anywhere; }
p, li, dd { overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.attention { border-left: 6px solid #D55E00; background: #fff4ec; }
.ok { color: #006e50; font-weight: 600; }
.bad { color: #a13b00; font-weight: 600; }
figure { margin: .75rem 0; overflow-x: auto; }
figure svg.chart { display: block; width: 100%; min-width: 600px; height: auto; }
figcaption { font-size: .9rem; color: #444; margin-top: .25rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .2rem .6rem; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
details summary { cursor: pointer; color: #0b5c8e; }
code { font-size: .9em; overflow-wrap: anywhere; }
.muted { color: #666; }
footer { max-width: 1040px; margin: 0 auto 2rem; padding: 0 1rem; color: #666; font-size: .85rem; }
@media (max-width: 600px) {
  main { padding: .5rem; }
  section { padding: .75rem; }
  dl.facts { grid-template-columns: 1fr; }
  dl.facts dd { margin-bottom: .4rem; }
  table.cards thead { display: none; }
  table.cards, table.cards tbody, table.cards tr, table.cards td { display: block; width: 100%; }
  table.cards tr { border-bottom: 2px solid #ccc; padding: .4rem 0; }
  table.cards td { border: 0; text-align: left; padding: .1rem 0; }
  table.cards td::before { content: attr(data-label); display: block; font-size: .8rem; color: #666; }
}
"#;

/// The page around `body`. The content security policy lets the page load
/// nothing and run nothing: its styles are inline, its pictures SVG.
fn layout(title: &str, subtitle: Markup, body: Markup, generated_at: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="Content-Security-Policy"
                    content="default-src 'none'; style-src 'unsafe-inline'; img-src data:";
                meta name="generator" content=(format!("pg_ambient {}", env!("CARGO_PKG_VERSION")));
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header.top {
                    h1 { (title) }
                    p { (subtitle) }
                }
                main { (body) }
                footer {
                    "Made by pg_ambient " (env!("CARGO_PKG_VERSION")) " at " (minute(generated_at))
                    ", from what the reader's role may read."
                }
            }
        }
    }
    .into_string()
}

/// A chart in a figure with its caption and its numbers as a table.
fn figure(drawn: Drawn, caption: &str, table: Markup) -> Markup {
    html! {
        figure {
            @match drawn {
                Ok(svg) => (PreEscaped(svg)),
                Err(e) => p.bad { "This chart could not be drawn: " (e) },
            }
            figcaption { (caption) }
            details {
                summary { "The numbers behind this chart" }
                div.scroll { (table) }
            }
        }
    }
}

fn empty(text: &str) -> Markup {
    html! { p.muted { (text) } }
}

pub fn project_page(d: &ProjectData) -> String {
    let metric = d
        .live
        .as_ref()
        .map(|l| l.metric.clone())
        .or_else(|| d.versions.last().map(|v| v.metric.clone()))
        .unwrap_or_else(|| "score".into());
    let body = html! {
        (summary(d))
        (versions(d, &metric))
        (timeline(d))
        (live_accuracy(d, &metric))
        (drift(d))
        (quality(d))
        (explanations(d))
        (model_choice(d, &metric))
        @if d.live.as_ref().is_some_and(|l| !l.feature_sets.is_empty()) {
            (feature_sets(d))
        }
    };
    let subtitle = html! {
        (d.task) " of " code { (d.target) } " · owner " (d.owner) " · since " (minute(&d.since))
    };
    layout(
        &format!("pg_ambient report: {}", d.project),
        subtitle,
        body,
        &d.generated_at,
    )
}

fn summary(d: &ProjectData) -> Markup {
    let open_alerts: Vec<_> = d.alerts.iter().filter(|a| a.open).collect();
    let pending: Vec<_> = d
        .approvals
        .iter()
        .filter(|a| a.state == "awaiting")
        .collect();
    html! {
        @if !open_alerts.is_empty() || !pending.is_empty() {
            section.attention #attention aria-labelledby="attention-h" {
                h2 #attention-h { "Needs attention" }
                ul {
                    @for a in &open_alerts {
                        li { strong { "Alert (" (a.kind) ")" } ", " (minute(&a.at)) ": " (a.message) }
                    }
                    @for a in &pending {
                        li {
                            strong { "Approval pending" } ": version " (a.version) " (model " (a.model_id)
                            ", score " (short(a.score)) "), waiting since " (minute(&a.requested_at))
                            ". " code { "SELECT ambient.approve(" (a.model_id) ");" }
                        }
                    }
                }
            }
        }
        section #summary aria-labelledby="summary-h" {
            h2 #summary-h { "The project" }
            dl.facts {
                dt { "Project" } dd { (d.project) }
                dt { "Task" } dd { (d.task) }
                dt { "Target" } dd { code { (d.target) } }
                dt { "Owner" } dd { (d.owner) }
                dt { "Input contract" }
                dd {
                    @for (k, (f, t)) in d.features.iter().zip(d.feature_types.iter().chain(std::iter::repeat(&String::new()))).enumerate() {
                        @if k > 0 { ", " }
                        code { (f) } " " span.muted { (t) }
                    }
                }
                @match &d.live {
                    Some(l) => {
                        dt { "Live model" }
                        dd {
                            "version " (l.version) " (model " (l.model_id) "), " (l.algorithm) ", "
                            (l.metric) " " (short(l.score)) " on " (l.test_rows) " test rows"
                            @if !l.tags.is_empty() { ", tags " (l.tags.join(", ")) }
                        }
                        dt { "Deployed" }
                        dd {
                            (minute(&l.deployed_at)) " by " (l.deployed_by)
                            @if let Some(s) = &l.strategy { " (" (s) ")" }
                            @if let Some(r) = &l.reason { ": " (r) }
                        }
                        dt { "Trained" }
                        dd {
                            (minute(&l.trained_at)) " by " (l.trained_by) " on " (l.train_rows) " rows"
                            @if let Some(s) = &l.source { " of " code { (charts::cut(s, 200)) } }
                        }
                    }
                    None => { dt { "Live model" } dd { "none deployed" } }
                }
                @if let Some(p) = &d.policy {
                    dt { "Policy" }
                    dd {
                        @for (k, (key, value)) in p.policy.as_object().into_iter().flatten().filter(|(_, v)| !v.is_null()).enumerate() {
                            @if k > 0 { ", " }
                            code { (key) } " " (value.to_string())
                        }
                        @if let Some(s) = &p.schedule {
                            br; "runs on pg_cron " code { (s) }
                            @if p.active == Some(false) { " (inactive)" }
                            @else if let Some(next) = next_run(s, &d.generated_at, p.cron_timezone.as_deref()) {
                                ", next at " (next)
                            }
                        }
                    }
                }
            }
        }
    }
}

fn versions(d: &ProjectData, metric: &str) -> Markup {
    let by_id: BTreeMap<i64, &super::Version> =
        d.versions.iter().map(|v| (v.model_id, v)).collect();
    let points: Vec<VersionPoint> = d
        .versions
        .iter()
        .filter_map(|v| {
            Some(VersionPoint {
                at: epoch(&v.trained_at)?,
                score: v.score,
                version: v.version,
                deployed: v.deployed,
                live: v.live == Some(true),
                parent: v
                    .parent
                    .and_then(|p| by_id.get(&p))
                    .and_then(|p| Some((epoch(&p.trained_at)?, p.score))),
            })
        })
        .collect();
    let title = format!(
        "{metric} of each of {} model versions over the time they were trained",
        d.versions.len()
    );
    html! {
        section #versions aria-labelledby="versions-h" {
            h2 #versions-h { "Versions" }
            @if points.is_empty() {
                (empty("No models yet."))
            } @else {
                (figure(charts::versions(&title, metric, &points),
                    "Each model version's score on its own test rows. Filled: deployed at some time; ringed: live; a grey line joins a retrain to the model it was retrained from.",
                    html! {
                        table {
                            thead { tr { th.n { "version" } th.n { "model" } th { "algorithm" } th.n { (metric) } th { "trained" } th { "by" } th.n { "parent" } th { "deployed" } th { "tags" } } }
                            tbody {
                                @for v in d.versions.iter().rev() {
                                    tr {
                                        td.n { (v.version) } td.n { (v.model_id) } td { (v.algorithm) }
                                        td.n { (short(v.score)) } td { (minute(&v.trained_at)) } td { (v.trained_by) }
                                        td.n { @if let Some(p) = v.parent { (p) } }
                                        td { @if v.live == Some(true) { "live" } @else if v.deployed { "yes" } }
                                        td { (v.tags.join(", ")) }
                                    }
                                }
                            }
                        }
                    }))
            }
        }
    }
}

/// Lanes of the deployment timeline, in order.
const LANES: [&str; 7] = [
    "deploy", "rollback", "canary", "shadow", "approval", "policy", "alert",
];

fn timeline(d: &ProjectData) -> Markup {
    // (when, lane, who, what)
    let mut rows: Vec<(String, usize, String, String)> = Vec::new();
    for x in &d.deployments {
        let lane = usize::from(x.strategy == "rollback");
        let what = format!(
            "version {} ({}){}",
            x.version,
            x.strategy,
            x.reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {r}"))
        );
        rows.push((x.at.clone(), lane, x.by.clone(), what));
    }
    for c in &d.challenges {
        let lane = if c.mode == "canary" { 2 } else { 3 };
        let traffic = c
            .traffic
            .map_or(String::new(), |t| format!(" at {:.0} %", t * 100.0));
        let what = format!(
            "{} {} of version {}{traffic}{}",
            c.mode,
            c.event,
            c.version,
            c.reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {r}"))
        );
        rows.push((c.at.clone(), lane, c.by.clone(), what));
    }
    for a in &d.approvals {
        rows.push((
            a.requested_at.clone(),
            4,
            "policy".into(),
            format!("version {} awaits approval", a.version),
        ));
        if let (Some(at), Some(by)) = (&a.decided_at, &a.decided_by) {
            let what = format!(
                "version {} {}{}",
                a.version,
                a.state,
                a.reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(": {r}"))
            );
            rows.push((at.clone(), 4, by.clone(), what));
        }
    }
    for p in &d.policy_runs {
        let what = format!(
            "{}{}: {}",
            p.status,
            p.action
                .as_deref()
                .map_or(String::new(), |a| format!(" ({a})")),
            p.reason
        );
        rows.push((p.at.clone(), 5, p.by.clone(), what));
    }
    for a in &d.alerts {
        rows.push((
            a.at.clone(),
            6,
            "policy".into(),
            format!("{}: {}", a.kind, a.message),
        ));
    }
    rows.sort_by(|a, b| {
        epoch(&a.0)
            .partial_cmp(&epoch(&b.0))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let events: Vec<Event> = rows
        .iter()
        .filter_map(|r| {
            Some(Event {
                at: epoch(&r.0)?,
                lane: r.1,
            })
        })
        .collect();
    let start = epoch(&d.since).unwrap_or(0.0);
    let end = epoch(&d.generated_at).unwrap_or(start + 1.0);
    let title = format!(
        "{} deployment events since {}",
        rows.len(),
        minute(&d.since)
    );
    html! {
        section #timeline aria-labelledby="timeline-h" {
            h2 #timeline-h { "Deployment timeline" }
            @if rows.is_empty() {
                (empty("Nothing was deployed, rolled back, tried or decided in this period."))
            } @else {
                (figure(charts::timeline(&title, &LANES, start, end, &events),
                    "Deployments, rollbacks, canary and shadow trials, approvals, policy actions and alerts, by kind.",
                    html! {
                        table {
                            thead { tr { th { "when" } th { "kind" } th { "who" } th { "what" } } }
                            tbody {
                                @for r in rows.iter().rev().take(TIMELINE_ROWS) {
                                    tr { td { (minute(&r.0)) } td { (LANES[r.1]) } td { (r.2) } td { (r.3) } }
                                }
                            }
                        }
                    }))
            }
            @if d.quiet_policy_runs == 1 {
                p.muted { "1 policy run found nothing to do." }
            } @else if d.quiet_policy_runs > 1 {
                p.muted { (d.quiet_policy_runs) " policy runs found nothing to do." }
            }
        }
    }
}

fn live_accuracy(d: &ProjectData, metric: &str) -> Markup {
    let mut by_version: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &d.monitor {
        if let (Some(at), Some(v), Some(version)) =
            (epoch(&r.at), metric_of(&r.metrics, metric), r.version)
        {
            by_version.entry(version).or_default().push((at, v));
        }
    }
    let series: Vec<Series> = by_version
        .iter()
        .map(|(version, points)| Series {
            name: format!("version {version}"),
            points: points.clone(),
            highlighted: true,
        })
        .collect();
    let threshold = d
        .policy
        .as_ref()
        .and_then(|p| p.policy.get("min_live_metric"))
        .and_then(serde_json::Value::as_f64);
    let references: Vec<Reference> = threshold
        .map(|t| Reference {
            value: t,
            name: format!("policy's minimum {}", short(t)),
        })
        .into_iter()
        .collect();
    let title = format!(
        "live {metric} per model version over {} monitor runs{}",
        d.monitor.len(),
        threshold.map_or(String::new(), |t| format!(", policy minimum {}", short(t)))
    );
    html! {
        section #live-accuracy aria-labelledby="live-h" {
            h2 #live-h { "Live accuracy" }
            @if series.is_empty() {
                (empty("No monitor runs in this period: SELECT ambient.monitor('project') measures the live model on labelled rows."))
            } @else {
                (figure(charts::lines_over_time(&LinesOverTime {
                        title: &title,
                        y_desc: &format!("live {metric}"),
                        series: &series,
                        references: &references,
                        log: false,
                    }),
                    &format!("{metric} of each model version on labelled rows, per monitor run; {}.",
                        if higher_is_better(metric) { "higher is better" } else { "lower is better" }),
                    html! {
                        table {
                            thead { tr { th.n { "version" } th.n { "runs" } th.n { "first" } th.n { "last" } th.n { "lowest" } th.n { "highest" } th { "last run" } } }
                            tbody {
                                @for (version, points) in &by_version {
                                    @let values: Vec<f64> = points.iter().map(|p| p.1).collect();
                                    tr {
                                        td.n { (version) } td.n { (values.len()) }
                                        td.n { (short(values[0])) } td.n { (short(values[values.len() - 1])) }
                                        td.n { (short(values.iter().copied().fold(f64::INFINITY, f64::min))) }
                                        td.n { (short(values.iter().copied().fold(f64::NEG_INFINITY, f64::max))) }
                                        td { (jiff::Timestamp::from_second(points[points.len() - 1].0 as i64).map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()) }
                                    }
                                }
                            }
                        }
                    }))
            }
        }
    }
}

/// One drift measure's series per feature, the `HIGHLIGHTED_FEATURES`
/// worst in colour; `worst` orders two values, worse first.
fn measure_series(
    d: &ProjectData,
    value: impl Fn(&super::DriftPoint) -> Option<f64>,
    worse_is_higher: bool,
) -> Vec<Series> {
    let mut by_feature: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for p in &d.drift {
        if let (Some(at), Some(v)) = (epoch(&p.at), value(p)) {
            if v.is_finite() {
                by_feature.entry(&p.feature).or_default().push((at, v));
            }
        }
    }
    let worst = |points: &[(f64, f64)]| {
        points
            .iter()
            .map(|p| if worse_is_higher { p.1 } else { -p.1 })
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let mut series: Vec<Series> = by_feature
        .into_iter()
        .map(|(name, points)| Series {
            name: name.to_string(),
            points,
            highlighted: false,
        })
        .collect();
    series.sort_by(|a, b| worst(&b.points).total_cmp(&worst(&a.points)));
    for s in series.iter_mut().take(HIGHLIGHTED_FEATURES) {
        s.highlighted = true;
    }
    series
}

/// One drift measure's chart.
struct Measure<'a> {
    short: &'static str,
    long: &'static str,
    series: &'a [Series],
    references: Vec<Reference>,
    /// A log scale (p-values).
    log: bool,
    /// How to read the chart.
    reading: &'static str,
}

fn drift(d: &ProjectData) -> Markup {
    // A policy the catalog holds was checked when it was set.
    let limits = d
        .policy
        .as_ref()
        .and_then(|p| Thresholds::of_policy(&p.policy).ok())
        .unwrap_or_default();
    let psi = measure_series(d, |p| p.psi, true);
    let ks = measure_series(d, |p| p.ks_p_value, false);
    let js = measure_series(d, |p| p.js, true);
    let runs = d
        .drift
        .iter()
        .map(|p| p.at.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let measures = [
        Measure {
            short: "PSI",
            long: "population stability index",
            series: &psi,
            references: vec![
                Reference {
                    value: limits.psi_warn,
                    name: format!("warn at {}", short(limits.psi_warn)),
                },
                Reference {
                    value: limits.psi_alert,
                    name: format!("drift at {}", short(limits.psi_alert)),
                },
            ],
            log: false,
            reading: "numeric features: above the upper line, the feature drifted",
        },
        Measure {
            short: "KS",
            long: "Kolmogorov–Smirnov p-value (log)",
            series: &ks,
            references: vec![Reference {
                value: limits.ks_p_value,
                name: format!("drift below {}", short(limits.ks_p_value)),
            }],
            log: true,
            reading: "numeric features: below the line, the distributions differ",
        },
        Measure {
            short: "JS",
            long: "Jensen–Shannon distance",
            series: &js,
            references: vec![Reference {
                value: limits.js,
                name: format!("drift at {}", short(limits.js)),
            }],
            log: false,
            reading: "categorical features: above the line, the feature drifted",
        },
    ];
    let mut latest: Vec<&super::LatestDrift> = d.latest_drift.iter().collect();
    let badness = |l: &super::LatestDrift| {
        let status = match l.status.as_deref() {
            Some("drift") => 2.0,
            Some("warn") => 1.0,
            _ => 0.0,
        };
        status * 10.0 + l.psi.unwrap_or(0.0).max(l.js.unwrap_or(0.0))
    };
    latest.sort_by(|a, b| badness(b).total_cmp(&badness(a)));
    html! {
        section #drift aria-labelledby="drift-h" {
            h2 #drift-h { "Drift" }
            @if d.drift.is_empty() {
                (empty("No drift runs in this period: SELECT ambient.drift('project') compares recent rows with the live model's training snapshot."))
            } @else {
                p { (runs) " drift runs. The " (HIGHLIGHTED_FEATURES) " features that moved most are in colour, the others in grey." }
                @for m in &measures {
                    @if !m.series.is_empty() {
                        h3 { (m.long) }
                        @let title = format!("{} per feature over {runs} drift runs", m.short);
                        (figure(charts::lines_over_time(&LinesOverTime {
                                title: &title, y_desc: m.long, series: m.series, references: &m.references, log: m.log,
                            }),
                            &format!("{} per feature and run; {}.", m.long, m.reading),
                            html! {
                                table {
                                    thead { tr { th { "feature" } th.n { "runs" } th.n { "last" } th.n { "lowest" } th.n { "highest" } } }
                                    tbody {
                                        @for s in m.series {
                                            @let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
                                            tr {
                                                td { (s.name) } td.n { (values.len()) }
                                                td.n { (short(values[values.len() - 1])) }
                                                td.n { (short(values.iter().copied().fold(f64::INFINITY, f64::min))) }
                                                td.n { (short(values.iter().copied().fold(f64::NEG_INFINITY, f64::max))) }
                                            }
                                        }
                                    }
                                }
                            }))
                    }
                }
            }
            @if let Some(first) = latest.first() {
                h3 { "Live distribution against the training snapshot" }
                p {
                    "Latest run, " (minute(&first.at)) ": "
                    @if first.dataset_drifted { span.bad { "the dataset drifted" } } @else { span.ok { "the dataset did not drift" } }
                    " (" (format!("{:.0} %", first.drifted_share * 100.0)) " of features drifted)."
                }
                @for l in latest.iter().take(DISTRIBUTIONS) {
                    @let bins: Vec<BinShare> = l.distribution.as_ref().and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
                    @if !bins.is_empty() {
                        @let rows: Vec<(String, f64, f64)> = bins.iter().map(|b| (b.bin.clone(), b.training, b.recent)).collect();
                        @let title = format!("distribution of {} in training and in {} recent rows ({})", l.feature, l.rows.unwrap_or(0), l.status.as_deref().unwrap_or("unmeasured"));
                        h3 { (l.feature) " " span.muted { "(" (l.status.as_deref().unwrap_or("unmeasured")) ")" } }
                        (figure(charts::distribution(&title, &rows),
                            &format!("Share of training rows and of recent rows in each bin of {}.", l.feature),
                            html! {
                                table {
                                    thead { tr { th { "bin" } th.n { "training" } th.n { "recent" } } }
                                    tbody { @for b in &bins { tr { td { (b.bin) } td.n { (format!("{:.1} %", b.training * 100.0)) } td.n { (format!("{:.1} %", b.recent * 100.0)) } } } }
                                }
                            }))
                    }
                }
            }
        }
    }
}

fn quality(d: &ProjectData) -> Markup {
    let diagnostics: Option<Result<Diagnostics, String>> = d
        .live
        .as_ref()
        .and_then(|l| l.diagnostics.clone())
        .map(|v| {
            serde_json::from_value::<Diagnostics>(v)
                .map_err(|e| e.to_string())
                .and_then(|dg| {
                    if dg.is_consistent() {
                        Ok(dg)
                    } else {
                        Err("its parts do not agree".to_string())
                    }
                })
        });
    html! {
        section #quality aria-labelledby="quality-h" {
            h2 #quality-h { "Quality of the live model on its test rows" }
            @match (&d.live, &diagnostics) {
                (None, _) => (empty("No live model.")),
                (Some(_), None) => (empty("Not recorded for this model (trained before 0.3.0); train it again to see it.")),
                (Some(_), Some(Err(e))) => p.bad { "What this model did on its test rows could not be read: " (e) },
                (Some(live), Some(Ok(dg))) => {
                    p { (dg.test_rows) " test rows held out when version " (live.version) " was trained." }
                    @if dg.confusion.is_none() && dg.classes > MAX_CONFUSION_CLASSES {
                        p.muted { "No confusion matrix: " (dg.classes) " classes are more than the " (MAX_CONFUSION_CLASSES) " one is kept for." }
                    }
                    @if let Some(c) = &dg.confusion {
                        h3 { "Confusion matrix" }
                        @let title = format!("confusion matrix of version {} over {} test rows", live.version, dg.test_rows);
                        (figure(charts::confusion(&title, &c.labels, &c.counts),
                            "Test rows by true class (rows) and predicted class (columns); the diagonal is right.",
                            html! {
                                table {
                                    thead { tr { th { "true \\ predicted" } @for l in &c.labels { th.n { (l) } } } }
                                    tbody { @for (l, row) in c.labels.iter().zip(&c.counts) { tr { th { (l) } @for n in row { td.n { (n) } } } } }
                                }
                            }))
                    }
                    @if let Some(cal) = &dg.calibration {
                        h3 { "Calibration" }
                        @let points: Vec<(f64, f64, u64)> = cal.bins.iter().map(|b| (b.mean_predicted, b.observed, b.rows)).collect();
                        @let title = format!("calibration of version {}: {} against how often it happened", live.version, cal.of);
                        (figure(charts::calibration(&title, &cal.of, &points),
                            &format!("Test rows binned by {}; a calibrated model's points lie on the diagonal.", cal.of),
                            html! {
                                table {
                                    thead { tr { th { "bin" } th.n { "rows" } th.n { "mean predicted" } th.n { "observed" } } }
                                    tbody { @for b in &cal.bins { tr { td { (format!("{:.0}–{:.0} %", b.lo * 100.0, b.hi * 100.0)) } td.n { (b.rows) } td.n { (short(b.mean_predicted)) } td.n { (short(b.observed)) } } } }
                                }
                            }))
                    }
                    @if let Some(r) = &dg.residuals {
                        h3 { "Actual against predicted" }
                        @let title = format!("actual against predicted {} for {} test rows of version {}, as counts on a grid", d.target, dg.test_rows, live.version);
                        (figure(charts::residuals(&title, &d.target, &charts::Grid { lo: r.lo, hi: r.hi, steps: r.grid, cells: &r.cells }),
                            "Test rows by predicted and actual value, counted on a grid (darker: more rows); on the dashed line the prediction was right.",
                            html! {
                                table {
                                    thead { tr { th { "residual (actual − predicted)" } th.n { "test rows" } } }
                                    tbody { @for (k, n) in r.counts.iter().enumerate() { tr { td { (short(r.edges[k])) " to " (short(r.edges[k + 1])) } td.n { (n) } } } }
                                }
                            }))
                    }
                }
            }
        }
    }
}

fn explanations(d: &ProjectData) -> Markup {
    let mut permutation: Vec<(String, f64)> = d
        .importance
        .iter()
        .filter(|i| i.method == "permutation")
        .map(|i| (i.feature.clone(), i.importance))
        .collect();
    let mut native: Vec<(String, f64)> = d
        .importance
        .iter()
        .filter(|i| i.method != "permutation")
        .map(|i| (i.feature.clone(), i.importance))
        .collect();
    let native_method = d
        .importance
        .iter()
        .find(|i| i.method != "permutation")
        .map(|i| i.method.clone());
    for list in [&mut permutation, &mut native] {
        list.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        list.truncate(20);
    }
    let example = d
        .live
        .as_ref()
        .and_then(|l| l.diagnostics.clone())
        .and_then(|v| serde_json::from_value::<Diagnostics>(v).ok())
        .filter(Diagnostics::is_consistent)
        .and_then(|dg| dg.example);
    let table = |items: &[(String, f64)], what: &str| {
        html! {
            table {
                thead { tr { th { "feature" } th.n { (what) } } }
                tbody { @for (f, v) in items { tr { td { (f) } td.n { (short(*v)) } } } }
            }
        }
    };
    html! {
        section #explanations aria-labelledby="explanations-h" {
            h2 #explanations-h { "Explanations" }
            @if d.live.is_none() {
                (empty("No live model."))
            }
            @if !permutation.is_empty() {
                h3 { "Permutation importance" }
                @let title = format!("permutation importance of {} input columns of the live model", permutation.len());
                (figure(charts::bars(&title, "fall of the primary metric when the column is shuffled", &permutation),
                    "How much the live model's primary metric falls on its test rows when one input column is shuffled.",
                    table(&permutation, "importance")))
            }
            @if let (Some(method), false) = (&native_method, native.is_empty()) {
                h3 { "The model's own importance (" (method) ")" }
                @let title = format!("{method} of the live model's {} features", native.len());
                (figure(charts::bars(&title, method, &native),
                    &format!("The live model's own measure ({method}), per feature it sees after preprocessing."),
                    table(&native, method)))
            }
            @if let Some(e) = &example {
                h3 { "One typical row, explained" }
                p {
                    "Each input at its training median or most common value: "
                    @for (k, (name, value)) in e.inputs.iter().enumerate() {
                        @if k > 0 { ", " }
                        code { (name) } " = " (value)
                    }
                    ". Predicted: " strong { (e.prediction) } "."
                }
                @let steps = waterfall_steps(e);
                @let title = format!("waterfall of {}: bias {} plus one contribution per input", e.explains, short(e.bias));
                (figure(charts::waterfall(&title, &e.explains, e.bias, &steps),
                    &format!("From the bias, each input's contribution to {}, in input order.", e.explains),
                    html! {
                        table {
                            thead { tr { th { "step" } th.n { "contribution" } } }
                            tbody {
                                tr { td { "(bias)" } td.n { (short(e.bias)) } }
                                @for (f, v) in &steps { tr { td { (f) } td.n { (short(*v)) } } }
                                tr { td { "= " (e.explains) } td.n { (short(e.bias + e.contributions.iter().sum::<f64>())) } }
                            }
                        }
                    }))
            } @else if let Some(live) = &d.live {
                h3 { "One typical row, explained" }
                p.muted { "The live model (" (live.algorithm) ") does not split a prediction into contributions of its inputs: the importances above are its explanation." }
            }
        }
    }
}

/// Bars a waterfall draws at most, besides the bias and the prediction.
const WATERFALL_STEPS: usize = 20;

/// An example's contributions in input order; past `WATERFALL_STEPS`
/// inputs, the largest keep a bar each and the rest share one.
fn waterfall_steps(e: &Example) -> Vec<(String, f64)> {
    let steps: Vec<(String, f64)> = e
        .inputs
        .iter()
        .map(|i| i.0.clone())
        .zip(e.contributions.iter().copied())
        .collect();
    if steps.len() <= WATERFALL_STEPS {
        return steps;
    }
    let mut by_size: Vec<usize> = (0..steps.len()).collect();
    by_size.sort_by(|&a, &b| steps[b].1.abs().total_cmp(&steps[a].1.abs()));
    let kept: std::collections::BTreeSet<usize> =
        by_size[..WATERFALL_STEPS - 1].iter().copied().collect();
    let rest: f64 = (0..steps.len())
        .filter(|k| !kept.contains(k))
        .map(|k| steps[k].1)
        .sum();
    let mut shown: Vec<(String, f64)> = kept.iter().map(|&k| steps[k].clone()).collect();
    shown.push((format!("({} other inputs)", steps.len() - kept.len()), rest));
    shown
}

fn model_choice(d: &ProjectData, metric: &str) -> Markup {
    let points: Vec<TrialPoint> = d
        .leaderboard
        .iter()
        .filter_map(|t| {
            Some(TrialPoint {
                seconds: t.seconds,
                score: t.mean_score.filter(|s| s.is_finite())?,
                algorithm: t.algorithm.clone(),
                chosen: t.chosen,
            })
        })
        .collect();
    html! {
        section #model-choice aria-labelledby="choice-h" {
            h2 #choice-h { "Choosing the model" }
            @if d.leaderboard.is_empty() {
                (empty("No search behind these models: train(..., algorithm => 'auto') searches and keeps its trials."))
            } @else {
                p { "The leaderboard of the latest search (version " (d.leaderboard_version.unwrap_or(0)) "), best first." }
                div.scroll {
                    table {
                        thead { tr { th.n { "rank" } th.n { "trial" } th { "algorithm" } th.n { "mean" } th.n { "std" } th.n { "seconds" } th { "status" } th { "hyper-parameters" } } }
                        tbody {
                            @for t in d.leaderboard.iter().take(LEADERBOARD_ROWS) {
                                tr {
                                    td.n { (t.rank) } td.n { (t.trial) }
                                    td { (t.algorithm) @if t.chosen { " " strong { "(chosen)" } } }
                                    td.n { (t.mean_score.map(short).unwrap_or_default()) }
                                    td.n { (t.std_score.map(short).unwrap_or_default()) }
                                    td.n { (short(t.seconds)) } td { (t.status) }
                                    td { code { (charts::cut(&t.hyperparams.to_string(), 120)) } }
                                }
                            }
                        }
                    }
                }
                @if !points.is_empty() {
                    @let title = format!("mean {metric} against fit time for {} trials", points.len());
                    (figure(charts::trials(&title, metric, &points),
                        "Each trial's mean score over the folds against its fit time, by algorithm; the chosen one ringed.",
                        html! {
                            table {
                                thead { tr { th { "algorithm" } th.n { "seconds" } th.n { "mean" } } }
                                tbody { @for p in &points { tr { td { (p.algorithm) } td.n { (short(p.seconds)) } td.n { (short(p.score)) } } } }
                            }
                        }))
                }
            }
        }
    }
}

fn feature_sets(d: &ProjectData) -> Markup {
    let used = d
        .live
        .as_ref()
        .map(|l| l.feature_sets.clone())
        .unwrap_or_default();
    html! {
        section #feature-sets aria-labelledby="sets-h" {
            h2 #sets-h { "Feature sets" }
            div.scroll {
                table {
                    thead { tr { th { "feature set" } th.n { "entities" } th { "newest event" } th { "newest ingest" } th { "ttl" } th.n { "stale" } } }
                    tbody {
                        @for name in &used {
                            @match d.feature_sets.iter().find(|f| &f.feature_set == name) {
                                Some(f) => tr {
                                    td { (f.feature_set) } td.n { (f.entities.unwrap_or(0)) }
                                    td { (f.newest_event_time.as_deref().map(minute).unwrap_or_default()) }
                                    td { (f.newest_ingested_at.as_deref().map(minute).unwrap_or_default()) }
                                    td { (f.ttl.as_deref().unwrap_or("none")) }
                                    td.n { (f.stale_share.map(|s| format!("{:.1} %", s * 100.0)).unwrap_or_default()) }
                                },
                                None => tr { td { (name) } td colspan="5" { span.muted { "not readable by this role" } } },
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn overview_page(d: &OverviewData) -> String {
    let body = html! {
        section #projects aria-labelledby="projects-h" {
            h2 #projects-h { "Projects" }
            @if d.projects.is_empty() {
                (empty("No project this role may read."))
            } @else {
                div.scroll {
                    table.cards {
                        thead { tr {
                            th { "project" } th { "live model" } th.n { "score" } th { "live metric and trend" }
                            th { "drift" } th.n { "open alerts" } th.n { "pending approvals" } th { "next scheduled run" }
                        } }
                        tbody {
                            @for p in &d.projects {
                                @let metric = p.metric.clone().unwrap_or_default();
                                @let values: Vec<f64> = p.live_metric.iter().filter_map(|r| metric_of(&r.metrics, &metric)).collect();
                                tr {
                                    td data-label="project" { a href=(page_name(&p.project, p.id)) { (p.project) } br; span.muted { (p.task) ", " (p.owner) } }
                                    td data-label="live model" {
                                        @match (p.version, &p.algorithm) {
                                            (Some(v), Some(a)) => { "v" (v) " " (a) }
                                            _ => span.muted { "none live" },
                                        }
                                        br; span.muted { (p.models) @if p.models == 1 { " model" } @else { " models" } }
                                    }
                                    td.n data-label="score" { @if let Some(s) = p.score { (metric) " " (short(s)) } }
                                    td data-label="live metric and trend" {
                                        @match values.last() {
                                            Some(last) => {
                                                (short(*last))
                                                @if values.len() >= 2 {
                                                    @let change = last - values[0];
                                                    @let better = (change >= 0.0) == higher_is_better(&metric);
                                                    " " span class=(if change == 0.0 { "muted" } else if better { "ok" } else { "bad" }) {
                                                        (if change > 0.0 { "▲ " } else if change < 0.0 { "▼ " } else { "= " }) (short(change.abs()))
                                                    }
                                                    @let title = format!("live {metric} of {} over {} monitor runs, last {}", p.project, values.len(), short(*last));
                                                    @if let Ok(svg) = charts::sparkline(&title, &values) { div { (PreEscaped(svg)) } }
                                                }
                                            }
                                            None => span.muted { "not monitored" },
                                        }
                                    }
                                    td data-label="drift" {
                                        @match &p.drift {
                                            Some(x) if x.dataset_drifted => { span.bad { "drifted" } " " span.muted { (minute(&x.at)) } }
                                            Some(x) => { span.ok { "stable" } " " span.muted { (format!("{:.0} %", x.drifted_share * 100.0)) " of features, " (minute(&x.at)) } }
                                            None => span.muted { "not measured" },
                                        }
                                    }
                                    td.n data-label="open alerts" { @if p.open_alerts > 0 { span.bad { (p.open_alerts) } } @else { "0" } }
                                    td.n data-label="pending approvals" { @if p.pending_approvals > 0 { span.bad { (p.pending_approvals) } } @else { "0" } }
                                    td data-label="next scheduled run" {
                                        @match p.schedule.as_ref().and_then(|s| s.schedule.as_deref().map(|c| (c, s.active))) {
                                            Some((_, Some(false))) => span.muted { "inactive" },
                                            Some((cron, _)) => {
                                                @match next_run(cron, &d.generated_at, d.cron_timezone.as_deref()) {
                                                    Some(next) => (next),
                                                    None => "—",
                                                }
                                                br; code { (cron) }
                                            }
                                            None => span.muted { "not scheduled" },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(
        "pg_ambient report: every project",
        html! { (d.projects.len()) " projects this role may read · since " (minute(&d.since)) },
        body,
        &d.generated_at,
    )
}
