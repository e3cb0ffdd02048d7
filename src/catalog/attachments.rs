//! `ambient.attachment_list`, and what attached tables feed back: the
//! outcome log their triggers write as labels arrive, each model's live
//! counts, and the monitor runs made from them.

use pgrx::prelude::*;
use pgrx::{pg_sys, JsonB};

use super::{as_owner, execute_kept};
use crate::error::AmbientResult;

/// One attached table.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: i64,
    pub relation: pg_sys::Oid,
    pub prediction_column: String,
    pub model_id_column: String,
    pub label_column: Option<String>,
    pub trigger_name: String,
}

const COLUMNS: &str =
    "id, relation::pg_catalog.oid, prediction_column, model_id_column, label_column, trigger_name";

fn from_row(row: &pgrx::spi::SpiHeapTupleData<'_>) -> AmbientResult<Attachment> {
    Ok(Attachment {
        id: row.get(1)?.unwrap_or_default(),
        relation: row.get(2)?.unwrap_or(pg_sys::Oid::INVALID),
        prediction_column: row.get(3)?.unwrap_or_default(),
        model_id_column: row.get(4)?.unwrap_or_default(),
        label_column: row.get(5)?,
        trigger_name: row.get(6)?.unwrap_or_default(),
    })
}

/// The project's attachments, oldest first.
pub fn of_project(project_id: i64) -> AmbientResult<Vec<Attachment>> {
    as_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT {COLUMNS} FROM ambient.attachment_list
                          WHERE project_id OPERATOR(pg_catalog.=) $1 ORDER BY id"
                    ),
                    None,
                    &[project_id.into()],
                )?
                .map(|row| from_row(&row))
                .collect()
        })
    })
}

/// The id of `project` if `relation` is attached to it, read-only under the
/// statement's snapshot (the trigger asks once per statement).
pub fn attached_project(project: &str, relation: pg_sys::Oid) -> AmbientResult<Option<i64>> {
    super::select_kept(
        "SELECT p.id FROM ambient.attachment_list a
           JOIN ambient.projects p ON p.id OPERATOR(pg_catalog.=) a.project_id
          WHERE p.name OPERATOR(pg_catalog.=) $1
            AND a.relation OPERATOR(pg_catalog.=) $2::pg_catalog.oid::pg_catalog.regclass",
        &[project.into(), relation.into()],
        |rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            rows.get::<i64>(0, 1)
        },
    )
}

/// What `attach` records, before it adds the columns and the trigger.
pub struct NewAttachment<'a> {
    pub project_id: i64,
    pub relation: pg_sys::Oid,
    pub prediction_column: &'a str,
    pub model_id_column: &'a str,
    pub label_column: Option<&'a str>,
    pub attached_by: &'a str,
}

/// Records an attachment and names its trigger after its id; returns the
/// trigger's name. Call inside `as_extension_owner`.
pub fn insert(new: NewAttachment<'_>) -> AmbientResult<String> {
    Spi::connect_mut(|client| {
        let row = client
            .update(
                "INSERT INTO ambient.attachment_list
                   (project_id, relation, prediction_column, model_id_column, label_column,
                    trigger_name, attached_by)
                 VALUES ($1, $2::pg_catalog.oid::pg_catalog.regclass, $3, $4, $5,
                         'ambient_attachment_' OPERATOR(pg_catalog.||)
                           pg_catalog.currval('ambient.attachment_list_id_seq'::pg_catalog.regclass),
                         $6)
                 RETURNING trigger_name",
                None,
                &[
                    new.project_id.into(),
                    new.relation.into(),
                    new.prediction_column.into(),
                    new.model_id_column.into(),
                    new.label_column.into(),
                    new.attached_by.into(),
                ],
            )?
            .first();
        Ok(row.get_one::<String>()?.unwrap_or_default())
    })
}

/// Call inside `as_extension_owner`.
pub fn delete(id: i64) -> AmbientResult<()> {
    Spi::run_with_args(
        "DELETE FROM ambient.attachment_list WHERE id OPERATOR(pg_catalog.=) $1",
        &[id.into()],
    )?;
    Ok(())
}

/// A labelled prediction: the model that made it, its prediction and the
/// label, as text.
pub type Outcome = (i64, String, String);

/// Records, from an attached table's trigger, that a labelled prediction
/// is to be counted (`add`) and one counted before is to be taken back
/// (`retract`).
pub fn log_outcome(
    project_id: i64,
    retract: Option<&Outcome>,
    add: Option<&Outcome>,
) -> AmbientResult<()> {
    fn part(o: Option<&Outcome>) -> (Option<i64>, Option<&str>, Option<&str>) {
        (
            o.map(|o| o.0),
            o.map(|o| o.1.as_str()),
            o.map(|o| o.2.as_str()),
        )
    }
    let (retract_model, retract_prediction, retract_label) = part(retract);
    let (add_model, add_prediction, add_label) = part(add);
    execute_kept(
        "INSERT INTO ambient.outcome_log
           (project_id, retract_model_id, retract_prediction, retract_label,
            add_model_id, add_prediction, add_label)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            project_id.into(),
            retract_model.into(),
            retract_prediction.into(),
            retract_label.into(),
            add_model.into(),
            add_prediction.into(),
            add_label.into(),
        ],
    )?;
    Ok(())
}

/// Takes at most `limit` of the project's committed outcome rows out of
/// the log: `(retract, add)` per row. Rows of transactions still running
/// stay for a later call. Call inside `as_extension_owner`, again until it
/// returns fewer than `limit`.
pub fn take_outcomes(
    project_id: i64,
    limit: i64,
) -> AmbientResult<Vec<(Option<Outcome>, Option<Outcome>)>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "WITH taken AS (
                 DELETE FROM ambient.outcome_log
                  WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY(
                        SELECT id FROM ambient.outcome_log
                         WHERE project_id OPERATOR(pg_catalog.=) $1 ORDER BY id LIMIT $2))
                 RETURNING id, retract_model_id, retract_prediction, retract_label,
                           add_model_id, add_prediction, add_label)
             SELECT retract_model_id, retract_prediction, retract_label,
                    add_model_id, add_prediction, add_label
               FROM taken ORDER BY id",
            None,
            &[project_id.into(), limit.into()],
        )?;
        rows.map(|row| {
            let outcome = |at: usize| -> AmbientResult<Option<Outcome>> {
                Ok(
                    match (
                        row.get::<i64>(at)?,
                        row.get::<String>(at + 1)?,
                        row.get::<String>(at + 2)?,
                    ) {
                        (Some(model), Some(prediction), Some(label)) => {
                            Some((model, prediction, label))
                        }
                        _ => None,
                    },
                )
            };
            Ok((outcome(1)?, outcome(4)?))
        })
        .collect()
    })
}

/// Every model's live counts in the project, as stored.
pub fn live_counts(project_id: i64) -> AmbientResult<Vec<(i64, JsonB)>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT model_id, counts FROM ambient.live_counts
                  WHERE project_id OPERATOR(pg_catalog.=) $1 ORDER BY model_id",
                None,
                &[project_id.into()],
            )?
            .map(|row| {
                Ok((
                    row.get::<i64>(1)?.unwrap_or_default(),
                    row.get::<JsonB>(2)?
                        .unwrap_or(JsonB(serde_json::Value::Null)),
                ))
            })
            .collect()
    })
}

/// Call inside `as_extension_owner`.
pub fn store_live_counts(
    project_id: i64,
    model_id: i64,
    counts: serde_json::Value,
) -> AmbientResult<()> {
    Spi::run_with_args(
        "INSERT INTO ambient.live_counts (project_id, model_id, counts, updated_at)
         VALUES ($1, $2, $3, pg_catalog.now())
         ON CONFLICT (project_id, model_id)
         DO UPDATE SET counts = excluded.counts, updated_at = excluded.updated_at",
        &[project_id.into(), model_id.into(), JsonB(counts).into()],
    )?;
    Ok(())
}

/// One monitor run's figures for one model.
pub struct NewMonitorRun<'a> {
    pub project_id: i64,
    pub model_id: i64,
    pub run_by: &'a str,
    pub scope: &'a str,
    pub labelled_rows: i64,
    pub metrics: serde_json::Value,
}

/// Call inside `as_extension_owner`.
pub fn insert_monitor_run(run: NewMonitorRun<'_>) -> AmbientResult<()> {
    Spi::run_with_args(
        "INSERT INTO ambient.monitor_log (project_id, model_id, run_by, scope, labelled_rows, metrics)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            run.project_id.into(),
            run.model_id.into(),
            run.run_by.into(),
            run.scope.into(),
            run.labelled_rows.into(),
            JsonB(run.metrics).into(),
        ],
    )?;
    Ok(())
}

/// A table's schema-qualified, quoted name, or `None` if it is gone.
pub fn relation_name(relation: pg_sys::Oid) -> Option<String> {
    // SAFETY: syscache lookups that return NULL for an oid that is gone.
    unsafe {
        let name = pg_sys::get_rel_name(relation);
        if name.is_null() {
            return None;
        }
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relation));
        if schema.is_null() {
            return None;
        }
        let text =
            |p: *const std::ffi::c_char| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        Some(format!(
            "{}.{}",
            pgrx::spi::quote_identifier(text(schema)),
            pgrx::spi::quote_identifier(text(name))
        ))
    }
}

/// The version of a model, for reports.
pub fn version_of(model_id: i64) -> AmbientResult<Option<i32>> {
    super::select_one::<i32>(
        "SELECT version FROM ambient.model_store WHERE id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
    )
}
