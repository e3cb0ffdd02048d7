//! `ambient.drop_model` and `ambient.drop_project`.

use pgrx::prelude::*;

use crate::catalog::audit::{self, Entry};
use crate::catalog::{as_extension_owner, attachments, models, projects, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};

/// Drops a model that was never deployed.
#[pg_extern(volatile, parallel_unsafe)]
fn drop_model(model_id: i64) -> bool {
    drop_one_model(model_id).or_raise()
}

fn drop_one_model(model_id: i64) -> AmbientResult<bool> {
    let caller = Caller::current();
    let project_id = models::project_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
    let name = projects::name_of(project_id)?;
    // Refused in terms of the model the caller named, not its project's
    // name, which a stranger may not learn.
    if !caller.acts_as(projects::require(&name)?.owner) {
        return Err(
            AmbientError::privilege(format!("permission denied for model {model_id}"))
                .hint("only roles with the privileges of its project's owner may drop it"),
        );
    }
    as_extension_owner(|| {
        let project = projects::lock_for_change(&name, &caller)?;
        // Dropped, or its project dropped, while we waited for the lock.
        if models::project_of(model_id)? != Some(project.id) {
            return Err(models::unknown(model_id));
        }
        if models::is_in_deployment_history(model_id)? {
            return Err(AmbientError::dependents(format!(
                "model {model_id} is in the deployment history of project \"{name}\""
            ))
            .hint(
                "deployed models stay so rollback can reach them; drop_project removes everything",
            ));
        }
        models::delete(model_id)?;
        audit::record(
            Entry::project(
                "drop model",
                &caller.name(),
                &name,
                project.id,
                project.owner,
            )
            .model(model_id),
        )?;
        Ok(true)
    })
}

/// Drops a project. A project with models needs `force => true`, which
/// drops its models, snapshots and deployment history too.
#[pg_extern(volatile, parallel_unsafe)]
fn drop_project(project: &str, force: default!(bool, "false")) -> bool {
    drop_whole_project(project, force).or_raise()
}

fn drop_whole_project(name: &str, force: bool) -> AmbientResult<bool> {
    let caller = Caller::current();
    as_extension_owner(|| {
        let project = projects::lock_for_change(name, &caller)?;
        // An attached table's trigger names the project; dropping the
        // project would make every write to the table fail.
        let attached: Vec<String> = attachments::of_project(project.id)?
            .iter()
            .filter_map(|a| attachments::relation_name(a.relation))
            .collect();
        if !attached.is_empty() {
            return Err(AmbientError::dependents(format!(
                "project \"{name}\" is attached to {}",
                attached.join(", ")
            ))
            .hint("detach it from each table first: ambient.detach(project, table)"));
        }
        let count = projects::model_count(project.id)?;
        if count > 0 && !force {
            return Err(AmbientError::dependents(format!(
                "project \"{name}\" has {count} model(s)"
            ))
            .hint("drop_project(project, force => true) drops them with it"));
        }
        // Its pg_cron job would otherwise run on, failing, for good.
        super::policy::unschedule_dropped(project.id, name)?;
        projects::delete(project.id)?;
        audit::record(
            Entry::project(
                "drop project",
                &caller.name(),
                name,
                project.id,
                project.owner,
            )
            .details(serde_json::json!({ "models": count })),
        )?;
        Ok(true)
    })
}
