//! `ambient.deployment_log`: append-only; the newest row of a project is its
//! live model.

use pgrx::prelude::*;

use pgrx::pg_sys::{PgBuiltInOids, PgOid};

use super::select_kept;
use crate::error::{AmbientError, AmbientResult};

#[derive(Debug, Clone, Copy)]
pub struct Deployment {
    pub id: i64,
    pub model_id: i64,
    pub parent_id: Option<i64>,
    pub model_version: i32,
}

const COLUMNS: &str = "d.id, d.model_id, d.parent_id, m.version";

fn one(sql: &str, arg: i64) -> AmbientResult<Option<Deployment>> {
    Spi::connect(|client| {
        let row = client.select(sql, None, &[arg.into()])?.first();
        if row.is_empty() {
            return Ok(None);
        }
        Ok(Some(Deployment {
            id: row.get::<i64>(1)?.unwrap_or_default(),
            model_id: row.get::<i64>(2)?.unwrap_or_default(),
            parent_id: row.get::<i64>(3)?,
            model_version: row.get::<i32>(4)?.unwrap_or_default(),
        }))
    })
}

pub fn live(project_id: i64) -> AmbientResult<Option<Deployment>> {
    one(
        &format!(
            "SELECT {COLUMNS} FROM ambient.deployment_log d
               JOIN ambient.model_store m ON m.id = d.model_id
              WHERE d.project_id = $1 ORDER BY d.id DESC LIMIT 1"
        ),
        project_id,
    )
}

pub fn get(id: i64) -> AmbientResult<Deployment> {
    one(
        &format!(
            "SELECT {COLUMNS} FROM ambient.deployment_log d
               JOIN ambient.model_store m ON m.id = d.model_id
              WHERE d.id = $1"
        ),
        id,
    )?
    .ok_or_else(|| AmbientError::undefined_object(format!("deployment {id} does not exist")))
}

/// The live model of a project, by name, with its artifact's sha256: the
/// predict path's one catalog read. Read-only SPI, so it runs in parallel
/// workers and on standbys.
pub fn live_model_of(project: &str) -> AmbientResult<Option<(i64, String)>> {
    select_kept(
        "SELECT d.model_id, m.artifact_sha256
           FROM ambient.projects p
           JOIN ambient.deployment_log d ON d.project_id = p.id
           JOIN ambient.model_store m ON m.id = d.model_id
          WHERE p.name = $1
          ORDER BY d.id DESC LIMIT 1",
        &[PgOid::BuiltIn(PgBuiltInOids::TEXTOID)],
        &[project.into()],
        |table| {
            if table.is_empty() {
                return Ok(None);
            }
            let row = table.first();
            Ok(row.get::<i64>(1)?.zip(row.get::<String>(2)?))
        },
    )
}

pub struct NewDeployment<'a> {
    pub project_id: i64,
    pub model_id: i64,
    pub previous_model_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub strategy: &'a str,
    pub reason: Option<&'a str>,
    pub deployed_by: &'a str,
}

/// Call inside `as_extension_owner`, holding the project lock.
pub fn insert(d: NewDeployment<'_>) -> AmbientResult<i64> {
    Spi::connect_mut(|client| {
        client
            .update(
                "INSERT INTO ambient.deployment_log
                   (project_id, model_id, previous_model_id, parent_id, strategy, reason, deployed_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                None,
                &[
                    d.project_id.into(),
                    d.model_id.into(),
                    d.previous_model_id.into(),
                    d.parent_id.into(),
                    d.strategy.into(),
                    d.reason.into(),
                    d.deployed_by.into(),
                ],
            )?
            .first()
            .get_one::<i64>()
    })?
    .ok_or_else(|| AmbientError::invalid("deployment insert returned no id"))
}
