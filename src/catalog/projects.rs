//! `ambient.projects`: one row per project, fixing its task, target and
//! owning role; and `ambient.project_grants`, who else may use it.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::audit::{self, Entry};
use super::{as_owner, select_kept, select_one, Caller};
use crate::error::{AmbientError, AmbientResult};
use crate::ml::Task;

#[derive(Debug, Clone)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub task: Task,
    pub target: String,
    /// Roles with this role's privileges own the project.
    pub owner: pg_sys::Oid,
    /// The input contract: the live model's feature names, in the order the
    /// array forms of predict take them. Fixed by the first train; only a
    /// deploy that says `new_contract => true` changes it.
    pub features: Vec<String>,
}

/// What a grant lets a role do besides its owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Predict with the live model or a pinned one.
    Predict,
    /// Predict, and see the project's models, snapshots and history.
    Read,
}

impl Privilege {
    pub fn parse(text: &str) -> AmbientResult<Privilege> {
        match text {
            "predict" => Ok(Privilege::Predict),
            "read" => Ok(Privilege::Read),
            other => Err(
                AmbientError::invalid(format!("unknown privilege \"{other}\""))
                    .hint("privilege is 'predict' or 'read'"),
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Predict => "predict",
            Privilege::Read => "read",
        }
    }
}

const COLUMNS: &str = "id, name, task, target, owner::pg_catalog.oid, features";

fn from_row(row: &pgrx::spi::SpiHeapTupleData<'_>) -> AmbientResult<Project> {
    let task: String = row.get(3)?.unwrap_or_default();
    Ok(Project {
        id: row.get(1)?.unwrap_or_default(),
        name: row.get(2)?.unwrap_or_default(),
        task: Task::parse(&task)?,
        target: row.get(4)?.unwrap_or_default(),
        owner: row.get(5)?.unwrap_or(pg_sys::Oid::INVALID),
        features: row.get(6)?.unwrap_or_default(),
    })
}

pub fn find(name: &str) -> AmbientResult<Option<Project>> {
    as_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                &format!(
                    "SELECT {COLUMNS} FROM ambient.projects WHERE name OPERATOR(pg_catalog.=) $1"
                ),
                None,
                &[name.into()],
            )?;
            match rows.into_iter().next() {
                Some(row) => Ok(Some(from_row(&row)?)),
                None => Ok(None),
            }
        })
    })
}

pub fn require(name: &str) -> AmbientResult<Project> {
    find(name)?.ok_or_else(|| unknown(name))
}

pub fn unknown(name: &str) -> AmbientError {
    AmbientError::undefined_object(format!("project \"{name}\" does not exist"))
        .hint("SELECT project FROM ambient.overview lists the projects you may read")
}

/// Errors unless the caller has the privileges of the project's owning
/// role (superusers always do): with 42501 to a role that may see the
/// project (it was granted some use of it), and to any other role exactly
/// as for a project that does not exist (42704), so names cannot be probed.
pub fn authorize_change(project: &Project, caller: &Caller) -> AmbientResult<()> {
    if caller.acts_as(project.owner) {
        return Ok(());
    }
    if !may_see(project.id, caller)? {
        return Err(unknown(&project.name));
    }
    Err(AmbientError::privilege(format!(
        "permission denied for project \"{}\"",
        project.name
    ))
    .hint("only roles with the privileges of the project's owner may change it"))
}

/// Errors unless the caller may train a new version of the project: as
/// `authorize_change`, except that a role that may not see the project
/// learns only that the name is taken (42710), which it could not create
/// anyway, rather than that it does not exist.
pub fn authorize_train(project: &Project, caller: &Caller) -> AmbientResult<()> {
    if caller.acts_as(project.owner) || may_see(project.id, caller)? {
        return authorize_change(project, caller);
    }
    Err(
        AmbientError::duplicate_object(format!("project \"{}\" already exists", project.name))
            .hint("another role owns it: train under another name"),
    )
}

/// Whether the caller may read the project: it acts as its owner, or as
/// a role granted 'read' (what the `readable_projects` view shows).
pub fn may_read(project: &Project, caller: &Caller) -> AmbientResult<bool> {
    Ok(caller.acts_as(project.owner)
        || grants_of(project.id)?
            .iter()
            .any(|&(grantee, privilege)| privilege == Privilege::Read && caller.acts_as(grantee)))
}

/// Whether the caller was granted any use of the project.
fn may_see(project_id: i64, caller: &Caller) -> AmbientResult<bool> {
    Ok(grants_of(project_id)?
        .iter()
        .any(|&(grantee, _)| caller.acts_as(grantee)))
}

/// What a caller asked for by name: a project, or a model by id. A refusal
/// names only what the caller named, so model ids cannot be used to learn
/// the names of projects the caller may not see.
pub enum Named<'a> {
    Project(&'a str),
    Model(i64),
}

/// Who may use a project besides its owners, as its grant rows say.
pub type Grants = Vec<(pg_sys::Oid, Privilege)>;

/// A project's grants, read-only under the statement's snapshot (predict).
pub fn grants_of(project_id: i64) -> AmbientResult<Grants> {
    select_kept(
        "SELECT grantee::pg_catalog.oid, privilege FROM ambient.project_grants
          WHERE project_id OPERATOR(pg_catalog.=) $1",
        &[project_id.into()],
        |rows| {
            (0..rows.len())
                .map(|row| {
                    let grantee = rows
                        .get::<pg_sys::Oid>(row, 1)?
                        .unwrap_or(pg_sys::Oid::INVALID);
                    let privilege =
                        Privilege::parse(&rows.get::<String>(row, 2)?.unwrap_or_default())?;
                    Ok((grantee, privilege))
                })
                .collect()
        },
    )
}

/// Errors with 42501 unless the caller has the privileges of the owner, or
/// of a role granted what covers `wanted` ('read' covers 'predict'). Role
/// membership is decided now, in Rust, from role oids.
pub fn authorize_use(
    named: Named<'_>,
    owner: pg_sys::Oid,
    grants: &Grants,
    caller: &Caller,
    wanted: Privilege,
) -> AmbientResult<()> {
    let granted = || {
        grants.iter().any(|&(grantee, privilege)| {
            (privilege == Privilege::Read || privilege == wanted) && caller.acts_as(grantee)
        })
    };
    if caller.acts_as(owner) || granted() {
        return Ok(());
    }
    // A project the caller has no use of at all is answered as one that
    // does not exist.
    if let Named::Project(name) = named {
        if !grants.iter().any(|&(grantee, _)| caller.acts_as(grantee)) {
            return Err(unknown(name));
        }
    }
    Err(match named {
        Named::Project(name) => AmbientError::privilege(format!(
            "permission denied for project \"{name}\""
        ))
        .hint(format!(
            "its owner can allow you with ambient.grant('{name}', '{}', '{}')",
            caller.name().replace('\'', "''"),
            wanted.as_str()
        )),
        Named::Model(id) => AmbientError::privilege(format!("permission denied for model {id}"))
            .hint(format!(
                "the owner of its project can allow you with ambient.grant(project, role, '{}')",
                wanted.as_str()
            )),
    })
}

/// Locks the project's row until the transaction ends, so trains, deploys,
/// rollbacks and grants of one project happen one at a time.
///
/// It updates the row (to itself) rather than `SELECT ... FOR UPDATE`: a
/// lock alone would let a REPEATABLE READ or SERIALIZABLE transaction whose
/// snapshot predates another's committed change take the lock and then act
/// on stale rows (number a version that exists, stack a deployment on the
/// wrong parent). Updating makes it fail at once with 40001 instead, and
/// READ COMMITTED transactions wait, then read the committed change.
/// Call inside `as_extension_owner`.
pub fn lock(name: &str) -> AmbientResult<Project> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            &format!(
                "UPDATE ambient.projects SET task = task
                  WHERE name OPERATOR(pg_catalog.=) $1 RETURNING {COLUMNS}"
            ),
            None,
            &[name.into()],
        )?;
        match rows.into_iter().next() {
            Some(row) => from_row(&row),
            None => Err(unknown(name)),
        }
    })
}

/// Locks a project that `caller` is about to change. The right is checked
/// before the lock, so a stranger cannot queue on it, and again holding it,
/// because the project may have been dropped and created anew meanwhile.
/// Call inside `as_extension_owner`.
pub fn lock_for_change(name: &str, caller: &Caller) -> AmbientResult<Project> {
    authorize_change(&require(name)?, caller)?;
    let project = lock(name)?;
    authorize_change(&project, caller)?;
    Ok(project)
}

/// What a new project is made of.
pub struct NewProject<'a> {
    pub name: &'a str,
    pub task: Task,
    pub target: &'a str,
    /// Its first model's features and their types: its input contract.
    pub features: &'a [String],
    pub feature_types: &'a [String],
}

/// Creates the project for `caller` if no one has yet, then locks it.
/// Call inside `as_extension_owner`.
pub fn create_and_lock(new: NewProject<'_>, caller: &Caller) -> AmbientResult<Project> {
    let created = Spi::connect_mut(|client| {
        let inserted = client.update(
            "INSERT INTO ambient.projects
               (name, task, target, owner, created_by, features, feature_types)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO NOTHING RETURNING id",
            None,
            &[
                new.name.into(),
                new.task.as_str().into(),
                new.target.into(),
                caller.oid.into(),
                caller.name().into(),
                new.features.to_vec().into(),
                new.feature_types.to_vec().into(),
            ],
        )?;
        AmbientResult::Ok(!inserted.is_empty())
    })?;
    let project = lock(new.name)?;
    if created {
        audit::record(
            Entry::project(
                "create project",
                &caller.name(),
                &project.name,
                project.id,
                project.owner,
            )
            .details(serde_json::json!({
                "task": new.task.as_str(),
                "target": new.target,
                "features": new.features,
            })),
        )?;
    }
    Ok(project)
}

/// Makes a model's features the project's input contract.
/// Call inside `as_extension_owner`, holding the project lock.
pub fn set_contract(project_id: i64, model_id: i64) -> AmbientResult<()> {
    Spi::connect_mut(|client| {
        client.update(
            "UPDATE ambient.projects p SET features = m.features, feature_types = m.feature_types
               FROM ambient.model_store m
              WHERE p.id OPERATOR(pg_catalog.=) $1 AND m.id OPERATOR(pg_catalog.=) $2",
            None,
            &[project_id.into(), model_id.into()],
        )?;
        Ok(())
    })
}

/// Deletes the project with its models, snapshots, deployments and grants.
/// Call inside `as_extension_owner`.
pub fn delete(id: i64) -> AmbientResult<()> {
    super::models::drop_copies(
        "SELECT c.oid::pg_catalog.regclass::pg_catalog.text FROM ambient.snapshots s
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.copy::pg_catalog.oid
          WHERE s.project_id OPERATOR(pg_catalog.=) $1",
        id,
    )?;
    Spi::connect_mut(|client| {
        // Deployment rows reference models, so they go first.
        for table in [
            "deployment_log",
            "model_store",
            "snapshots",
            "project_grants",
        ] {
            client.update(
                &format!("DELETE FROM ambient.{table} WHERE project_id OPERATOR(pg_catalog.=) $1"),
                None,
                &[id.into()],
            )?;
        }
        client.update(
            "DELETE FROM ambient.projects WHERE id OPERATOR(pg_catalog.=) $1",
            None,
            &[id.into()],
        )?;
        Ok(())
    })
}

/// Lets `grantee` use the project; true if it could not already.
/// Call inside `as_extension_owner`, holding the project lock.
pub fn grant(
    project_id: i64,
    grantee: pg_sys::Oid,
    privilege: Privilege,
    caller: &Caller,
) -> AmbientResult<bool> {
    Spi::connect_mut(|client| {
        let inserted = client.update(
            "INSERT INTO ambient.project_grants (project_id, grantee, privilege, granted_by)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            None,
            &[
                project_id.into(),
                grantee.into(),
                privilege.as_str().into(),
                caller.name().into(),
            ],
        )?;
        Ok(!inserted.is_empty())
    })
}

/// Takes a grant back; true if there was one.
/// Call inside `as_extension_owner`, holding the project lock.
pub fn revoke(project_id: i64, grantee: pg_sys::Oid, privilege: Privilege) -> AmbientResult<bool> {
    Spi::connect_mut(|client| {
        let deleted = client.update(
            "DELETE FROM ambient.project_grants
              WHERE project_id OPERATOR(pg_catalog.=) $1
                AND grantee OPERATOR(pg_catalog.=) $2
                AND privilege OPERATOR(pg_catalog.=) $3",
            None,
            &[project_id.into(), grantee.into(), privilege.as_str().into()],
        )?;
        Ok(!deleted.is_empty())
    })
}

pub fn name_of(project_id: i64) -> AmbientResult<String> {
    select_one::<String>(
        "SELECT name FROM ambient.projects WHERE id OPERATOR(pg_catalog.=) $1",
        &[project_id.into()],
    )?
    .ok_or_else(|| AmbientError::undefined_object(format!("project {project_id} does not exist")))
}

pub fn model_count(project_id: i64) -> AmbientResult<i64> {
    Ok(select_one::<i64>(
        "SELECT pg_catalog.count(*) FROM ambient.model_store
          WHERE project_id OPERATOR(pg_catalog.=) $1",
        &[project_id.into()],
    )?
    .unwrap_or(0))
}
