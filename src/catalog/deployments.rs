//! `ambient.deployment_log`: append-only; the newest row of a project is its
//! live model, as the view `ambient.live_deployments` says in one place.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{as_owner, select_kept};
use crate::error::{AmbientError, AmbientResult};

#[derive(Debug, Clone, Copy)]
pub struct Deployment {
    pub id: i64,
    pub model_id: i64,
    pub parent_id: Option<i64>,
    pub model_version: i32,
}

fn one(sql: &str, arg: i64) -> AmbientResult<Option<Deployment>> {
    as_owner(|| {
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
    })
}

pub fn live(project_id: i64) -> AmbientResult<Option<Deployment>> {
    one(
        "SELECT l.deployment_id, l.model_id, l.parent_id, m.version
           FROM ambient.live_deployments l
           JOIN ambient.model_store m ON m.id OPERATOR(pg_catalog.=) l.model_id
          WHERE l.project_id OPERATOR(pg_catalog.=) $1",
        project_id,
    )
}

pub fn get(id: i64) -> AmbientResult<Deployment> {
    one(
        "SELECT d.id, d.model_id, d.parent_id, m.version
           FROM ambient.deployment_log d
           JOIN ambient.model_store m ON m.id OPERATOR(pg_catalog.=) d.model_id
          WHERE d.id OPERATOR(pg_catalog.=) $1",
        id,
    )?
    .ok_or_else(|| AmbientError::undefined_object(format!("deployment {id} does not exist")))
}

/// A project as predict sees it: who owns it and which model is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveProject {
    pub project_id: i64,
    pub owner: pg_sys::Oid,
    /// The live model's id and its artifact's sha256, if one is deployed;
    /// for a tag (`project@tag`), the tagged model's.
    pub model: Option<(i64, String)>,
    /// The tag, when the name was `project@tag`.
    pub tag: Option<String>,
}

/// The predict path's one catalog read: the project by name with its live
/// model; or, for `project@tag` when no project has that whole name, the
/// project with the model the tag points at. Read-only SPI, so it runs in
/// parallel workers and on standbys.
pub fn live_project(project: &str) -> AmbientResult<Option<LiveProject>> {
    fn read(
        tag: Option<&str>,
    ) -> impl FnOnce(&super::KeptRows) -> AmbientResult<Option<LiveProject>> + '_ {
        move |rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            Ok(Some(LiveProject {
                project_id: rows.get::<i64>(0, 1)?.unwrap_or_default(),
                owner: rows
                    .get::<pg_sys::Oid>(0, 2)?
                    .unwrap_or(pg_sys::Oid::INVALID),
                model: rows.get::<i64>(0, 3)?.zip(rows.get::<String>(0, 4)?),
                tag: tag.map(str::to_string),
            }))
        }
    }
    let exact = select_kept(
        "SELECT p.id, p.owner::pg_catalog.oid, l.model_id, m.artifact_sha256
           FROM ambient.projects p
           LEFT JOIN ambient.live_deployments l ON l.project_id OPERATOR(pg_catalog.=) p.id
           LEFT JOIN ambient.model_store m ON m.id OPERATOR(pg_catalog.=) l.model_id
          WHERE p.name OPERATOR(pg_catalog.=) $1",
        &[project.into()],
        read(None),
    )?;
    let Some((name, tag)) = project.rsplit_once('@').filter(|_| exact.is_none()) else {
        return Ok(exact);
    };
    select_kept(
        "SELECT p.id, p.owner::pg_catalog.oid, t.model_id, m.artifact_sha256
           FROM ambient.projects p
           LEFT JOIN ambient.model_tags t ON t.project_id OPERATOR(pg_catalog.=) p.id
                                        AND t.tag OPERATOR(pg_catalog.=) $2
           LEFT JOIN ambient.model_store m ON m.id OPERATOR(pg_catalog.=) t.model_id
          WHERE p.name OPERATOR(pg_catalog.=) $1",
        &[name.into(), tag.into()],
        read(Some(tag)),
    )
}

#[derive(Clone, Copy)]
pub struct NewDeployment<'a> {
    pub project_id: i64,
    pub model_id: i64,
    pub previous_model_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub strategy: &'a str,
    pub reason: Option<&'a str>,
    pub deployed_by: &'a str,
}

impl<'a> NewDeployment<'a> {
    /// A deployment of `model_id` stacked on the live one, so that
    /// rollback returns to it.
    pub fn on_top_of(
        live: Option<Deployment>,
        project_id: i64,
        model_id: i64,
        strategy: &'a str,
        reason: Option<&'a str>,
        deployed_by: &'a str,
    ) -> Self {
        NewDeployment {
            project_id,
            model_id,
            previous_model_id: live.map(|l| l.model_id),
            parent_id: live.map(|l| l.id),
            strategy,
            reason,
            deployed_by,
        }
    }
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
