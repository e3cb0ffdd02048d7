//! `ambient.attachment_list`, and the monitor runs made from the attached
//! tables' labelled rows.

use pgrx::prelude::*;
use pgrx::{pg_sys, JsonB};

use super::{as_owner, prune_log, Log};
use crate::error::AmbientResult;

/// One attached table.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: i64,
    pub project_id: i64,
    pub relation: pg_sys::Oid,
    pub prediction_column: String,
    pub model_id_column: String,
    pub label_column: Option<String>,
    pub trigger_name: String,
}

const COLUMNS: &str = "id, relation::pg_catalog.oid, prediction_column, model_id_column,
                        label_column, trigger_name, project_id";

fn from_row(row: &pgrx::spi::SpiHeapTupleData<'_>) -> AmbientResult<Attachment> {
    Ok(Attachment {
        id: row.get(1)?.unwrap_or_default(),
        relation: row.get(2)?.unwrap_or(pg_sys::Oid::INVALID),
        prediction_column: row.get(3)?.unwrap_or_default(),
        model_id_column: row.get(4)?.unwrap_or_default(),
        label_column: row.get(5)?,
        trigger_name: row.get(6)?.unwrap_or_default(),
        project_id: row.get(7)?.unwrap_or_default(),
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

/// The attachments of any project on `relation`, oldest first: two
/// projects on one table must not share columns.
pub fn on_relation(relation: pg_sys::Oid) -> AmbientResult<Vec<Attachment>> {
    as_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT {COLUMNS} FROM ambient.attachment_list
                          WHERE relation OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass
                          ORDER BY id"
                    ),
                    None,
                    &[relation.into()],
                )?
                .map(|row| from_row(&row))
                .collect()
        })
    })
}

/// What a firing trigger checks itself against, and whose rights it
/// predicts with.
#[derive(Debug, Clone)]
pub struct Fed {
    pub project_id: i64,
    pub prediction_column: String,
    pub model_id_column: String,
    pub label_column: Option<String>,
    /// The attached table's owner (the partitioned table's, for a
    /// partition).
    pub table_owner: pg_sys::Oid,
}

/// The attachment of `project` whose trigger `trigger_name` fires on
/// `relation`: attached to it, or to a partitioned table it is a partition
/// of, at any level (a table attached first and made a partition later
/// keeps its own). Read-only under the statement's snapshot (the trigger
/// asks once per statement).
pub fn feeding(
    project: &str,
    relation: pg_sys::Oid,
    trigger_name: &str,
) -> AmbientResult<Option<Fed>> {
    super::select_kept(
        "SELECT p.id, a.prediction_column, a.model_id_column, a.label_column, c.relowner
           FROM ambient.attachment_list a
           JOIN ambient.projects p ON p.id OPERATOR(pg_catalog.=) a.project_id
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.relation::pg_catalog.oid
          WHERE p.name OPERATOR(pg_catalog.=) $1
            AND a.trigger_name OPERATOR(pg_catalog.=) $3
            AND (a.relation OPERATOR(pg_catalog.=) $2::pg_catalog.oid::pg_catalog.regclass
                 OR a.relation OPERATOR(pg_catalog.=) ANY (ARRAY(
                      SELECT pg_catalog.pg_partition_ancestors($2::pg_catalog.oid::pg_catalog.regclass))))",
        &[project.into(), relation.into(), trigger_name.into()],
        |rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            Ok(Some(Fed {
                project_id: rows.get::<i64>(0, 1)?.unwrap_or_default(),
                prediction_column: rows.get::<String>(0, 2)?.unwrap_or_default(),
                model_id_column: rows.get::<String>(0, 3)?.unwrap_or_default(),
                label_column: rows.get::<String>(0, 4)?,
                table_owner: rows
                    .get::<pg_sys::Oid>(0, 5)?
                    .unwrap_or(pg_sys::Oid::INVALID),
            }))
        },
    )
}

/// Whether `model_id` is one of the project's models, read-only under the
/// statement's snapshot (the trigger asks for rows that arrive served).
pub fn model_of_project(model_id: i64, project_id: i64) -> AmbientResult<bool> {
    super::select_kept(
        "SELECT 1 FROM ambient.model_store
          WHERE id OPERATOR(pg_catalog.=) $1 AND project_id OPERATOR(pg_catalog.=) $2",
        &[model_id.into(), project_id.into()],
        |rows| Ok(!rows.is_empty()),
    )
}

/// Forgets the attachments of tables that no longer exist (dropped,
/// with their triggers); returns each one's project and table. Call
/// inside `as_extension_owner`.
pub fn forget_dropped() -> AmbientResult<Vec<(i64, String)>> {
    Spi::connect_mut(|client| {
        let deleted = client.update(
            "DELETE FROM ambient.attachment_list a
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                 WHERE c.oid OPERATOR(pg_catalog.=) a.relation::pg_catalog.oid)
             RETURNING a.project_id, a.relation::pg_catalog.oid::pg_catalog.text",
            None,
            &[],
        )?;
        let mut forgotten = Vec::new();
        for row in deleted {
            forgotten.push((
                row.get::<i64>(1)?.unwrap_or_default(),
                format!(
                    "table with oid {}",
                    row.get::<String>(2)?.unwrap_or_default()
                ),
            ));
        }
        Ok(forgotten)
    })
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
    prune_log(Log::Monitor, run.project_id)
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
