//! `ambient.drift`: recent rows against the live model's training
//! snapshot, per input column and for the prediction (see `ml::drift`).
//! Recent rows are the project's attached tables, or any relation or
//! query, optionally only those within a window of a time column; they are
//! read with the caller's privileges.

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgRelation;

use super::check_project_name;
use super::model_cache;
use crate::catalog::attachments;
use crate::catalog::operations::{self, NewDriftRun};
use crate::catalog::projects::{self, Project};
use crate::catalog::{as_author, as_extension_owner, ensure_writable, Author, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::gucs;
use crate::ml::dataset::ColumnKind;
use crate::ml::drift::{self, ColumnDrift, Thresholds};
use crate::ml::stats::ColumnStats;
use crate::ml::Task;
use crate::source::{self, Source};

/// Compares recent rows with the live model's training snapshot; records
/// the run in `ambient.drift_runs`. The last row, `(dataset)`, says whether
/// the share of drifted columns reached the project's threshold.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)]
fn drift(
    project: &str,
    relation: default!(Option<PgRelation>, "NULL"),
    query: default!(Option<&str>, "NULL"),
    time_column: default!(Option<&str>, "NULL"),
    window: default!(Option<Interval>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(feature, String),
        name!(kind, String),
        name!(rows, i64),
        name!(psi, Option<f64>),
        name!(ks, Option<f64>),
        name!(ks_p_value, Option<f64>),
        name!(js, Option<f64>),
        name!(status, String),
    ),
> {
    let recent = match (relation, query) {
        (None, None) => Recent::Attached,
        (Some(rel), None) => Recent::Source(Source::Relation(rel)),
        (None, Some(q)) => Recent::Source(Source::query(q).or_raise()),
        (Some(_), Some(_)) => AmbientError::invalid("give relation or query, not both").raise(),
    };
    let report = run(project, recent, time_column, window).or_raise();
    let (drifted, share, rows) = (report.drifted, report.share, report.rows);
    let mut out: Vec<_> = report
        .columns
        .into_iter()
        .map(|(feature, kind, d)| {
            (
                feature,
                kind.to_string(),
                d.rows as i64,
                d.psi,
                d.ks,
                d.ks_p_value,
                d.js,
                d.status.as_str().to_string(),
            )
        })
        .collect();
    out.push((
        "(dataset)".to_string(),
        format!("{:.0} % of columns drifted", share * 100.0),
        rows as i64,
        None,
        None,
        None,
        None,
        if drifted { "drift" } else { "stable" }.to_string(),
    ));
    TableIterator::new(out)
}

/// Where recent rows come from.
pub(super) enum Recent {
    /// The project's attached tables, with their predictions.
    Attached,
    Source(Source),
}

/// A drift run's findings.
pub(super) struct Report {
    pub model_id: i64,
    pub rows: u64,
    /// (column, "numeric" or "categorical", measures), the prediction last.
    pub columns: Vec<(String, &'static str, ColumnDrift)>,
    pub drifted: bool,
    pub share: f64,
}

fn run(
    project: &str,
    recent: Recent,
    time_column: Option<&str>,
    window: Option<Interval>,
) -> AmbientResult<Report> {
    check_project_name(project)?;
    ensure_writable()?;
    let caller = Caller::current();
    let found = projects::require(project)?;
    projects::authorize_change(&found, &caller)?;
    let limits = thresholds(found.id)?;
    let report = measure_with(&found, &caller, &recent, time_column, window, limits)?;
    let scope = match (&recent, time_column) {
        (Recent::Attached, _) => "the attached tables".to_string(),
        (Recent::Source(s), _) => s.describe(),
    };
    let scope = match time_column {
        Some(column) => format!("{scope}, {column} within the window"),
        None => scope,
    };
    record(&found, &caller, &report, &scope)?;
    Ok(report)
}

/// Records a report in `ambient.drift_log`.
pub(super) fn record(
    project: &Project,
    caller: &Caller,
    report: &Report,
    source: &str,
) -> AmbientResult<i64> {
    let columns: Vec<serde_json::Value> = report
        .columns
        .iter()
        .map(|(feature, kind, d)| {
            serde_json::json!({
                "feature": feature, "kind": kind, "rows": d.rows, "psi": d.psi, "ks": d.ks,
                "ks_p_value": d.ks_p_value, "js": d.js, "status": d.status.as_str(),
                "distribution": d.distribution,
            })
        })
        .collect();
    as_extension_owner(|| {
        operations::insert_drift_run(NewDriftRun {
            project_id: project.id,
            model_id: report.model_id,
            run_by: &caller.name(),
            source,
            rows: report.rows as i64,
            drifted_share: report.share,
            dataset_drifted: report.drifted,
            columns: serde_json::Value::Array(columns),
        })
    })
}

/// The project's drift thresholds: its policy's (`drift`, and `max_drift`
/// as the dataset's share), or the defaults.
fn thresholds(project_id: i64) -> AmbientResult<Thresholds> {
    let policy = as_extension_owner(|| operations::policy_of(project_id))?;
    policy
        .as_ref()
        .map_or(Ok(Thresholds::default()), Thresholds::of_policy)
        .map_err(|e| AmbientError::invalid(format!("the project's drift thresholds: {e}")))
}

/// What one column of recent rows holds.
enum Values {
    Numbers(Vec<f64>),
    Texts(Vec<String>),
}

/// Compares recent rows with the live model's snapshot, under `limits`.
pub(super) fn measure_with(
    project: &Project,
    caller: &Caller,
    recent: &Recent,
    time_column: Option<&str>,
    window: Option<Interval>,
    limits: Thresholds,
) -> AmbientResult<Report> {
    let filter = match (time_column, window) {
        (None, None) => None,
        (Some(column), Some(window)) => Some((column, window)),
        _ => {
            return Err(AmbientError::invalid("time_column and window go together")
                .hint("give both to compare recent rows, or neither to compare every row"))
        }
    };
    let (model_id, sha) = model_cache::live_model(&project.name, caller)?;
    let model = model_cache::load_verified(model_id, &sha)?;
    let stats: Vec<(String, ColumnStats)> =
        as_extension_owner(|| operations::snapshot_stats(model_id))?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                AmbientError::invalid(format!("the snapshot's statistics are unreadable: {e}"))
            })?
            .unwrap_or_default();
    // The inputs as training read them, then the prediction (attached
    // tables only), read as the label was.
    //
    // Time inputs are left out: new rows are later than the training rows
    // by definition, so their distribution always moves (KS 1) without
    // the model seeing anything new in what it takes of them.
    let (times, compared): (Vec<_>, Vec<_>) = model
        .inputs
        .inputs
        .iter()
        .partition(|i| i.kind == ColumnKind::Timestamp);
    if !times.is_empty() {
        notice!(
            "time inputs are not compared for drift (new rows are later by definition): {}",
            times
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut columns: Vec<(String, ColumnKind)> =
        compared.iter().map(|i| (i.name.clone(), i.kind)).collect();
    let inputs = columns.len();
    let label_kind = match project.task {
        Task::Classification => ColumnKind::Categorical,
        Task::Regression => ColumnKind::Numeric,
    };
    let reset = |columns: &[(String, ColumnKind)]| -> Vec<Values> {
        columns
            .iter()
            .map(|(_, k)| match k {
                ColumnKind::Categorical => Values::Texts(Vec::new()),
                _ => Values::Numbers(Vec::new()),
            })
            .collect()
    };
    let mut rows = 0u64;
    let mut values: Vec<Values>;
    let mut budget = Budget {
        rows: gucs::max_training_rows(),
        bytes: gucs::max_training_memory_bytes(),
        held: 0,
    };
    match recent {
        Recent::Attached => {
            let attached = attachments::of_project(project.id)?;
            if attached.is_empty() {
                return Err(AmbientError::not_in_state(format!(
                    "project \"{}\" is attached to no table",
                    project.name
                ))
                .hint("attach it with ambient.attach, or compare a relation or query: drift(project, relation => ...)"));
            }
            columns.push(("(prediction)".to_string(), label_kind));
            values = reset(&columns);
            for a in attached {
                // Read as the table's owner, as monitor reads it.
                let (Some(table), Some(owner)) = (
                    attachments::relation_name(a.relation),
                    Author::owner_of_table(a.relation),
                ) else {
                    continue;
                };
                if let Some((column, _)) = filter {
                    super::monitor::check_may_read_column(a.relation, column)?;
                }
                let mut exprs: Vec<String> = compared
                    .iter()
                    .map(|i| source::read_as_feature(&quote_identifier(&i.name), i.kind))
                    .collect();
                exprs.push(source::read_as_feature(
                    &quote_identifier(&a.prediction_column),
                    label_kind,
                ));
                // A model that looks features up by entity is compared on
                // them as served now to these rows' entities.
                rows += as_author(&owner, || {
                    let from = super::features::with_served_features(model_id, &table)?;
                    read(&from, &exprs, filter, &mut values, &mut budget)
                })?;
            }
        }
        Recent::Source(src) => {
            values = reset(&columns);
            let exprs: Vec<String> = columns
                .iter()
                .map(|(name, kind)| source::read_as_feature(&quote_identifier(name), *kind))
                .collect();
            let from = super::features::with_served_features(model_id, &src.sql_from())?;
            rows = read(&from, &exprs, filter, &mut values, &mut budget)?;
        }
    }
    let reference = |name: &str| stats.iter().find(|(n, _)| n == name).map(|(_, s)| s);
    let mut report_columns = Vec::with_capacity(columns.len());
    for ((name, _), column) in columns.iter().zip(values.iter_mut()) {
        pgrx::check_for_interrupts!();
        let wanted = if name == "(prediction)" {
            project.target.as_str()
        } else {
            name.as_str()
        };
        let outdated = || {
            AmbientError::not_in_state(format!(
                "the snapshot of model {model_id} has no distribution for \"{wanted}\""
            ))
            .hint("snapshots made before 0.2.0 lack them; train the project again to measure drift")
        };
        let measured = match (reference(wanted), column) {
            (Some(ColumnStats::Category(c)), Values::Texts(texts)) => (
                "categorical",
                drift::categorical(c, texts.iter().map(String::as_str), &limits),
            ),
            (Some(ColumnStats::Numeric(n)), Values::Numbers(numbers)) => (
                "numeric",
                drift::numeric(n, numbers, &limits).ok_or_else(outdated)?,
            ),
            _ => return Err(outdated()),
        };
        report_columns.push((name.clone(), measured.0, measured.1));
    }
    // The prediction is reported, but drift is a matter of the inputs.
    let inputs = &report_columns[..inputs];
    let measures: Vec<ColumnDrift> = inputs.iter().map(|c| c.2.clone()).collect();
    let (drifted, share) = drift::dataset(&measures, &limits);
    Ok(Report {
        model_id,
        rows,
        columns: report_columns,
        drifted,
        share,
    })
}

/// What reading recent rows may still take.
struct Budget {
    rows: u64,
    bytes: u64,
    held: u64,
}

/// Reads `exprs` from `from` (optionally only rows within the window) into
/// `values`, as the caller; returns the rows read.
fn read(
    from: &str,
    exprs: &[String],
    filter: Option<(&str, Interval)>,
    values: &mut [Values],
    budget: &mut Budget,
) -> AmbientResult<u64> {
    let mut sql = format!("SELECT {} FROM {from}", exprs.join(", "));
    let mut args = Vec::new();
    if let Some((column, window)) = filter {
        sql.push_str(&format!(
            " WHERE {} OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)",
            quote_identifier(column)
        ));
        args.push(window.into());
    }
    let mut read = 0u64;
    source::for_each_row(&sql, &args, |row| {
        if budget.rows == 0 {
            return Err(AmbientError::limit(format!(
                "more recent rows than ambient.max_training_rows ({}) to compare",
                gucs::max_training_rows()
            ))
            .hint("compare a window: time_column => ..., \"window\" => '7 days'"));
        }
        budget.rows -= 1;
        read += 1;
        for (j, column) in values.iter_mut().enumerate() {
            match column {
                Values::Numbers(v) => {
                    if let Some(x) = row.get::<f64>(j + 1)? {
                        v.push(x);
                        budget.held += 8;
                    }
                }
                Values::Texts(v) => {
                    if let Some(t) = row.get::<String>(j + 1)? {
                        budget.held += t.len() as u64 + 24;
                        v.push(t);
                    }
                }
            }
        }
        if budget.held > budget.bytes {
            return Err(source::too_much_memory(
                "the recent rows",
                budget.held,
                budget.bytes,
            ));
        }
        Ok(())
    })?;
    Ok(read)
}
