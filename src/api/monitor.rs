//! `ambient.monitor`: live metrics per model over the labelled rows of a
//! project's attached tables, recorded in `ambient.monitor_runs`.
//!
//! By default it is incremental: the attached tables' triggers log each
//! label as it is written (and take back one that changes), and a run
//! folds the log into each model's counts (`ml::live`), reading no
//! attached table. With `time_column` and `window` it instead reads the
//! labelled rows of that window from the tables, with the caller's
//! privileges.

use std::collections::BTreeMap;

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::JsonB;

use super::check_project_name;
use super::model_cache;
use crate::catalog::attachments::{self, NewMonitorRun, Outcome};
use crate::catalog::projects::Project;
use crate::catalog::{as_extension_owner, ensure_writable, projects, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::ml::dataset::ColumnKind;
use crate::ml::live::LiveCounts;
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
    let (scope, read) =
        match (time_column, window) {
            (None, None) => ("all labelled rows".to_string(), None),
            (Some(column), Some(window)) => (
                format!("{column} within {window} of now"),
                Some(read_window(found.id, found.task, column, window)?),
            ),
            _ => return Err(
                AmbientError::invalid("time_column and window go together").hint(
                    "give both to measure recent rows, or neither to measure every labelled row",
                ),
            ),
        };
    as_extension_owner(|| {
        let locked = projects::lock_for_change(project, &caller)?;
        let counts = match read {
            Some(counts) => counts,
            None => fold_outcome_log(locked.id, locked.task)?,
        };
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

/// Folds the labels logged since the last run into each model's stored
/// counts, stores them, and returns every model's counts.
fn fold_outcome_log(project_id: i64, task: Task) -> AmbientResult<BTreeMap<i64, LiveCounts>> {
    let mut counts = BTreeMap::new();
    for (model_id, stored) in attachments::live_counts(project_id)? {
        let parsed: LiveCounts = serde_json::from_value(stored.0).map_err(|e| {
            AmbientError::invalid(format!(
                "live counts of model {model_id} are unreadable: {e}"
            ))
        })?;
        counts.insert(model_id, parsed);
    }
    let mut changed = std::collections::BTreeSet::new();
    // In batches, in the order the rows were logged, so what is held stays
    // bounded however long the log.
    const BATCH: i64 = 10_000;
    loop {
        pgrx::check_for_interrupts!();
        let batch = attachments::take_outcomes(project_id, BATCH)?;
        let last = (batch.len() as i64) < BATCH;
        for (retract, add) in batch {
            for (outcome, sign) in [(retract, -1), (add, 1)] {
                if let Some((model_id, prediction, label)) = outcome {
                    counts
                        .entry(model_id)
                        .or_insert_with(|| LiveCounts::new(task))
                        .count(&prediction, &label, sign)?;
                    changed.insert(model_id);
                }
            }
        }
        if last {
            break;
        }
    }
    for model_id in changed {
        let stored = serde_json::to_value(&counts[&model_id])
            .map_err(|e| AmbientError::invalid(format!("live counts: {e}")))?;
        attachments::store_live_counts(project_id, model_id, stored)?;
    }
    Ok(counts)
}

/// Counts the labelled rows of every attached table whose `time_column` is
/// within `window` of now, reading the tables as the caller.
fn read_window(
    project_id: i64,
    task: Task,
    time_column: &str,
    window: Interval,
) -> AmbientResult<BTreeMap<i64, LiveCounts>> {
    let mut counts: BTreeMap<i64, LiveCounts> = BTreeMap::new();
    let mut budget = RowBudget::new();
    for attachment in attachments::of_project(project_id)? {
        let Some(label) = &attachment.label_column else {
            continue;
        };
        let Some(table) = attachments::relation_name(attachment.relation) else {
            continue;
        };
        let sql = format!(
            "SELECT {prediction}::pg_catalog.text, {label}::pg_catalog.text, {model_id}
               FROM {table}
              WHERE {label} IS NOT NULL AND {prediction} IS NOT NULL AND {model_id} IS NOT NULL
                AND {time} OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)",
            prediction = quote_identifier(&attachment.prediction_column),
            label = quote_identifier(label),
            model_id = quote_identifier(&attachment.model_id_column),
            time = quote_identifier(time_column),
        );
        source::for_each_row(&sql, &[window.into()], |row| {
            budget.take_row()?;
            let (model_id, prediction, label): Outcome = (
                row.get::<i64>(3)?.unwrap_or_default(),
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
            );
            counts
                .entry(model_id)
                .or_insert_with(|| LiveCounts::new(task))
                .count(&prediction, &label, 1)?;
            Ok(())
        })?;
    }
    Ok(counts)
}

/// Each of `models` scored on the same rows: the labelled rows of the
/// project's attached tables that one of `predicted_by` predicted, every
/// model predicting them afresh from their inputs (read as the caller).
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
        let mut x = Vec::new();
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
                Task::Classification => row.get::<String>(inputs.len() + 1)?.unwrap_or_default(),
                Task::Regression => row
                    .get::<f64>(inputs.len() + 1)?
                    .unwrap_or_default()
                    .to_string(),
            };
            for ((model, read_at), counts) in loaded.iter().zip(&positions).zip(counts.iter_mut()) {
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
