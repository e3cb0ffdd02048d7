//! `ambient.projects`: one row per project, fixing its task and target.

use pgrx::prelude::*;

use super::select_one;
use crate::error::{AmbientError, AmbientResult};
use crate::ml::Task;

#[derive(Debug, Clone)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub task: Task,
    pub target: String,
}

const COLUMNS: &str = "id, name, task, target";

fn from_row(row: &pgrx::spi::SpiHeapTupleData<'_>) -> AmbientResult<Project> {
    let task: String = row.get(3)?.unwrap_or_default();
    Ok(Project {
        id: row.get(1)?.unwrap_or_default(),
        name: row.get(2)?.unwrap_or_default(),
        task: Task::parse(&task)?,
        target: row.get(4)?.unwrap_or_default(),
    })
}

pub fn find(name: &str) -> AmbientResult<Option<Project>> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!("SELECT {COLUMNS} FROM ambient.projects WHERE name = $1"),
            None,
            &[name.into()],
        )?;
        match rows.into_iter().next() {
            Some(row) => Ok(Some(from_row(&row)?)),
            None => Ok(None),
        }
    })
}

pub fn require(name: &str) -> AmbientResult<Project> {
    find(name)?.ok_or_else(|| unknown(name))
}

pub fn unknown(name: &str) -> AmbientError {
    AmbientError::undefined_object(format!("project \"{name}\" does not exist"))
        .hint("SELECT project FROM ambient.overview lists the projects")
}

/// Errors with 42501 unless the current user is a member of the project's
/// owning role (superusers always are). Runs as the caller.
pub fn check_owner(name: &str) -> AmbientResult<()> {
    let allowed = select_one::<bool>(
        "SELECT pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'USAGE')
                   FROM ambient.projects p
                   LEFT JOIN pg_catalog.pg_roles r ON r.rolname = p.owner
                  WHERE p.name = $1",
        &[name.into()],
    )?;
    match allowed {
        Some(true) => Ok(()),
        // No role row: the owner was dropped; only superusers may go on.
        None if is_superuser()? => Ok(()),
        _ => Err(
            AmbientError::privilege(format!("permission denied for project \"{name}\""))
                .hint("only members of the role that created the project may change it"),
        ),
    }
}

fn is_superuser() -> AmbientResult<bool> {
    Ok(select_one::<bool>(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER",
        &[],
    )?
    .unwrap_or(false))
}

/// Locks the project's row until the transaction ends, so deploys, rollbacks
/// and version numbers of one project are handed out one at a time.
/// Call inside `as_extension_owner`.
pub fn lock(name: &str) -> AmbientResult<Project> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            &format!("SELECT {COLUMNS} FROM ambient.projects WHERE name = $1 FOR UPDATE"),
            None,
            &[name.into()],
        )?;
        match rows.into_iter().next() {
            Some(row) => from_row(&row),
            None => Err(unknown(name)),
        }
    })
}

/// Creates the project if no one has yet, then locks it. `owner` is the
/// caller's role. Call inside `as_extension_owner`.
pub fn create_and_lock(
    name: &str,
    task: Task,
    target: &str,
    owner: &str,
) -> AmbientResult<Project> {
    Spi::connect_mut(|client| {
        client.update(
            "INSERT INTO ambient.projects (name, task, target, owner, created_by)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (name) DO NOTHING",
            None,
            &[
                name.into(),
                task.as_str().into(),
                target.into(),
                owner.into(),
            ],
        )?;
        AmbientResult::Ok(())
    })?;
    lock(name)
}

/// Deletes the project with its models, snapshots and deployments.
/// Call inside `as_extension_owner`.
pub fn delete(id: i64) -> AmbientResult<()> {
    Spi::connect_mut(|client| {
        // Deployment rows reference models, so they go first.
        client.update(
            "DELETE FROM ambient.deployment_log WHERE project_id = $1",
            None,
            &[id.into()],
        )?;
        client.update(
            "DELETE FROM ambient.model_store WHERE project_id = $1",
            None,
            &[id.into()],
        )?;
        client.update(
            "DELETE FROM ambient.snapshots WHERE project_id = $1",
            None,
            &[id.into()],
        )?;
        client.update(
            "DELETE FROM ambient.projects WHERE id = $1",
            None,
            &[id.into()],
        )?;
        Ok(())
    })
}

pub fn name_of(project_id: i64) -> AmbientResult<String> {
    select_one::<String>(
        "SELECT name FROM ambient.projects WHERE id = $1",
        &[project_id.into()],
    )?
    .ok_or_else(|| AmbientError::undefined_object(format!("project {project_id} does not exist")))
}

pub fn model_count(project_id: i64) -> AmbientResult<i64> {
    Ok(select_one::<i64>(
        "SELECT count(*) FROM ambient.model_store WHERE project_id = $1",
        &[project_id.into()],
    )?
    .unwrap_or(0))
}
