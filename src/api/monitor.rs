//! `ambient.monitor`: live metrics per model over the labelled rows of a
//! project's attached tables (or those within a window of a time column),
//! recorded in `ambient.monitor_runs`.
//!
//! Each run counts the rows as they are now, in the database (grouped by
//! model, prediction and label), so what it reports is always what the
//! tables hold: a label changed while the trigger was detached or
//! disabled, under `session_replication_role = replica`, or by a restore,
//! counts once with its latest value; a deleted or truncated row does not
//! count. The tables are read as their owner, whose rights the trigger
//! predicts with, under SECURITY_RESTRICTED_OPERATION and a pinned
//! search_path: whoever runs the monitor (a superuser's scheduled policy)
//! lends the table's functions and policies none of their rights.

use std::collections::BTreeMap;

use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::JsonB;

use super::check_project_name;
use super::model_cache;
use crate::catalog::attachments::{self, NewMonitorRun};
use crate::catalog::projects::Project;
use crate::catalog::{as_author, as_extension_owner, ensure_writable, projects, Author, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::ml::dataset::ColumnKind;
use crate::ml::live::{LiveCounts, ValueSums};
use crate::ml::preprocess::Value;
use crate::ml::Task;
use crate::source;

/// Live metrics of each of the project's models that has labelled rows:
/// accuracy and F1 (classification) or R², MAE and RMSE (regression).
#[pg_extern(volatile, parallel_unsafe)]
fn monitor(
    project: &str,
    time_column: default!(Option<&str>, "NULL"),
    window: default!(Option<Interval>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(model_id, i64),
        name!(version, i32),
        name!(labelled_rows, i64),
        name!(metrics, JsonB),
    ),
> {
    // (The return type is spelt out: pgrx's schema generator does not
    // resolve type aliases.)
    let rows = run(project, time_column, window).or_raise();
    TableIterator::new(
        rows.into_iter()
            .map(|(id, version, n, m)| (id, version, n, JsonB(m))),
    )
}

/// (model id, version, labelled rows, metrics).
pub(super) type Run = (i64, i32, i64, serde_json::Value);

pub(super) fn run(
    project: &str,
    time_column: Option<&str>,
    window: Option<Interval>,
) -> AmbientResult<Vec<Run>> {
    check_project_name(project)?;
    ensure_writable()?;
    let caller = Caller::current();
    let found = projects::require(project)?;
    projects::authorize_change(&found, &caller)?;
    let (scope, filter) =
        match (time_column, window) {
            (None, None) => ("all labelled rows".to_string(), None),
            (Some(column), Some(window)) => (
                format!("{column} within {window} of now"),
                Some((column, window)),
            ),
            _ => return Err(
                AmbientError::invalid("time_column and window go together").hint(
                    "give both to measure recent rows, or neither to measure every labelled row",
                ),
            ),
        };
    if let Some((column, _)) = filter {
        for a in attachments::of_project(found.id)? {
            check_may_read_column(a.relation, column)?;
        }
    }
    let counts = count_labelled_rows(found.id, found.task, filter)?;
    as_extension_owner(|| {
        let locked = projects::lock_for_change(project, &caller)?;
        let mut runs = Vec::new();
        for (model_id, counts) in counts {
            let rows = counts.rows();
            if rows == 0 {
                continue;
            }
            let metrics = serde_json::to_value(counts.metrics())
                .map_err(|e| AmbientError::invalid(format!("metrics: {e}")))?;
            attachments::insert_monitor_run(NewMonitorRun {
                project_id: locked.id,
                model_id,
                run_by: &caller.name(),
                scope: &scope,
                labelled_rows: rows,
                metrics: metrics.clone(),
            })?;
            let version = attachments::version_of(model_id)?.unwrap_or_default();
            runs.push((model_id, version, rows, metrics));
        }
        Ok(runs)
    })
}

/// Errors (42501) unless the caller may read `column` of `relation`: the
/// tables are read as their owner, and a window over a column the caller
/// may not read would let it probe that column through the counts.
pub(super) fn check_may_read_column(relation: pg_sys::Oid, column: &str) -> AmbientResult<()> {
    // Run as the caller: the function is qualified.
    let allowed = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.has_column_privilege($1::pg_catalog.oid, $2, 'SELECT')",
        &[relation.into(), column.into()],
    )?
    .unwrap_or(false);
    if !allowed {
        return Err(AmbientError::privilege(format!(
            "permission denied for column \"{column}\" of table {}",
            attachments::relation_name(relation).unwrap_or_default()
        )));
    }
    Ok(())
}

/// Distinct (model, prediction, label) groups one count may hold: labels
/// are the table's, and free text could make them as many as the rows.
const MAX_GROUPS: usize = 100_000;

/// Each model's counts over the labelled rows of every attached table
/// (those whose `time_column` is within the window of now, if given),
/// summed by the database: a classifier's rows per (prediction, label),
/// a regressor's error sums over finite estimates and labels.
fn count_labelled_rows(
    project_id: i64,
    task: Task,
    filter: Option<(&str, Interval)>,
) -> AmbientResult<BTreeMap<i64, LiveCounts>> {
    let mut counts: BTreeMap<i64, LiveCounts> = BTreeMap::new();
    let mut groups = 0usize;
    for attachment in attachments::of_project(project_id)? {
        let Some(label) = &attachment.label_column else {
            continue;
        };
        let (Some(table), Some(owner)) = (
            attachments::relation_name(attachment.relation),
            Author::owner_of_table(attachment.relation),
        ) else {
            continue;
        };
        let prediction = quote_identifier(&attachment.prediction_column);
        let label = quote_identifier(label);
        let model_id = quote_identifier(&attachment.model_id_column);
        let mut labelled =
            format!("{label} IS NOT NULL AND {prediction} IS NOT NULL AND {model_id} IS NOT NULL");
        let mut args = Vec::new();
        if let Some((column, window)) = filter {
            labelled.push_str(&format!(
                " AND {} OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)",
                quote_identifier(column)
            ));
            args.push(window.into());
        }
        let sql = match task {
            Task::Classification => format!(
                "SELECT {model_id}, {prediction}::pg_catalog.text, {label}::pg_catalog.text,
                        pg_catalog.count(*)
                   FROM {table} WHERE {labelled} GROUP BY 1, 2, 3"
            ),
            // A NaN or infinite label or estimate cannot be scored.
            Task::Regression => format!(
                "SELECT m, pg_catalog.count(*), pg_catalog.sum(e OPERATOR(pg_catalog.*) e),
                        pg_catalog.sum(pg_catalog.abs(e)), pg_catalog.sum(y),
                        pg_catalog.sum(y OPERATOR(pg_catalog.*) y)
                   FROM (SELECT {model_id} AS m, {label}::pg_catalog.float8 AS y,
                                {label}::pg_catalog.float8
                                  OPERATOR(pg_catalog.-) {prediction}::pg_catalog.float8 AS e
                           FROM {table} WHERE {labelled}) AS labelled
                  WHERE y OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.float8
                    AND y OPERATOR(pg_catalog.>) '-Infinity'::pg_catalog.float8
                    AND e OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.float8
                    AND e OPERATOR(pg_catalog.>) '-Infinity'::pg_catalog.float8
                  GROUP BY m"
            ),
        };
        as_author(&owner, || {
            source::for_each_row(&sql, &args, |row| {
                groups += 1;
                if groups > MAX_GROUPS {
                    return Err(AmbientError::limit(format!(
                        "more than {MAX_GROUPS} distinct (model, prediction, label) groups to count"
                    ))
                    .hint("labels are classes: a label column with that many distinct values is not one"));
                }
                let model_id = row.get::<i64>(1)?.unwrap_or_default();
                let model = counts
                    .entry(model_id)
                    .or_insert_with(|| LiveCounts::new(task));
                match task {
                    Task::Classification => model.count(
                        &row.get::<String>(2)?.unwrap_or_default(),
                        &row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<i64>(4)?.unwrap_or_default(),
                    )?,
                    Task::Regression => model.add_sums(ValueSums {
                        rows: row.get::<i64>(2)?.unwrap_or_default(),
                        squared_error: row.get::<f64>(3)?.unwrap_or_default(),
                        absolute_error: row.get::<f64>(4)?.unwrap_or_default(),
                        actual: row.get::<f64>(5)?.unwrap_or_default(),
                        actual_squared: row.get::<f64>(6)?.unwrap_or_default(),
                    })?,
                }
                Ok(())
            })
        })?;
    }
    Ok(counts)
}

/// Each of `models` scored on the same rows: the labelled rows of the
/// project's attached tables that one of `predicted_by` predicted, every
/// model predicting them afresh from their inputs (read as each table's
/// owner, as `count_labelled_rows` reads).
/// Returns each model's counts, in order, and the rows.
pub(super) fn score_labelled_rows(
    project: &Project,
    models: &[i64],
    predicted_by: &[i64],
) -> AmbientResult<(Vec<LiveCounts>, i64)> {
    let caller = Caller::current();
    let loaded = models
        .iter()
        .map(|&id| model_cache::pinned_model(id, &caller))
        .collect::<AmbientResult<Vec<_>>>()?;
    let mut counts: Vec<LiveCounts> = models
        .iter()
        .map(|_| LiveCounts::new(project.task))
        .collect();
    let label_kind = match project.task {
        Task::Classification => ColumnKind::Categorical,
        Task::Regression => ColumnKind::Numeric,
    };
    // Every model reads its own inputs; the union is read once.
    let mut inputs: Vec<(String, ColumnKind)> = Vec::new();
    for model in &loaded {
        for input in &model.inputs.inputs {
            if !inputs.iter().any(|(n, _)| *n == input.name) {
                inputs.push((input.name.clone(), input.kind));
            }
        }
    }
    // Where each model's inputs sit in that union, worked out once.
    let positions: Vec<Vec<usize>> = loaded
        .iter()
        .map(|model| {
            model
                .inputs
                .inputs
                .iter()
                .map(|input| {
                    inputs
                        .iter()
                        .position(|(n, _)| *n == input.name)
                        .unwrap_or(0)
                })
                .collect()
        })
        .collect();
    let mut rows = 0i64;
    let mut budget = RowBudget::new();
    for a in attachments::of_project(project.id)? {
        let (Some(label), Some(table)) = (&a.label_column, attachments::relation_name(a.relation))
        else {
            continue;
        };
        let mut exprs: Vec<String> = inputs
            .iter()
            .map(|(name, kind)| source::read_as_feature(&quote_identifier(name), *kind))
            .collect();
        exprs.push(source::read_as_feature(
            &quote_identifier(label),
            label_kind,
        ));
        let sql = format!(
            "SELECT {} FROM {table} WHERE {} IS NOT NULL AND {} OPERATOR(pg_catalog.=) ANY ($1)",
            exprs.join(", "),
            quote_identifier(label),
            quote_identifier(&a.model_id_column)
        );
        let Some(owner) = Author::owner_of_table(a.relation) else {
            continue;
        };
        let mut x = Vec::new();
        as_author(&owner, || {
            source::for_each_row(&sql, &[predicted_by.to_vec().into()], |row| {
                budget.take_row()?;
                let mut texts: Vec<Option<String>> = Vec::with_capacity(inputs.len());
                let mut numbers: Vec<Option<f64>> = Vec::with_capacity(inputs.len());
                for (j, (_, kind)) in inputs.iter().enumerate() {
                    if *kind == ColumnKind::Categorical {
                        texts.push(row.get::<String>(j + 1)?);
                        numbers.push(None);
                    } else {
                        texts.push(None);
                        numbers.push(row.get::<f64>(j + 1)?);
                    }
                }
                let actual = match project.task {
                    Task::Classification => {
                        row.get::<String>(inputs.len() + 1)?.unwrap_or_default()
                    }
                    Task::Regression => row
                        .get::<f64>(inputs.len() + 1)?
                        .unwrap_or_default()
                        .to_string(),
                };
                for ((model, read_at), counts) in
                    loaded.iter().zip(&positions).zip(counts.iter_mut())
                {
                    let values: Vec<Value<'_>> = read_at
                        .iter()
                        .map(|&j| match (&texts[j], numbers[j]) {
                            (Some(t), _) => Value::Text(t),
                            (None, Some(v)) => Value::Number(v),
                            _ => Value::Missing,
                        })
                        .collect();
                    model.encode(&values, &mut x)?;
                    let predicted = match project.task {
                        Task::Classification => model.predict_label(&x),
                        Task::Regression => model.predict_value(&x).to_string(),
                    };
                    counts.count(&predicted, &actual, 1)?;
                }
                rows += 1;
                Ok(())
            })
        })?;
    }
    Ok((counts, rows))
}

/// Rows a monitoring read may take: `ambient.max_training_rows`, as
/// training's; what a row holds is counted and dropped as it is read.
struct RowBudget {
    left: u64,
}

impl RowBudget {
    fn new() -> Self {
        RowBudget {
            left: crate::gucs::max_training_rows(),
        }
    }

    fn take_row(&mut self) -> AmbientResult<()> {
        if self.left == 0 {
            return Err(AmbientError::limit(format!(
                "more labelled rows than ambient.max_training_rows ({}) to score",
                crate::gucs::max_training_rows()
            ))
            .hint("narrow the rows with a time_column and window"));
        }
        self.left -= 1;
        Ok(())
    }
}
