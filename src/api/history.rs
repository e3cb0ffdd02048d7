//! History you can audit: the audit trail's chaining, tags, `log`, `diff`.

use pgrx::prelude::*;

use crate::catalog::audit::{self, Entry};
use crate::catalog::projects::{self, Project};
use crate::catalog::{as_extension_owner, models, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};

/// The audit chain's newest entry as committed now: for the chaining
/// trigger `ambient.chain_audit_entry` only.
#[pg_extern(volatile, parallel_unsafe)]
fn audit_chain_head() -> TableIterator<'static, (name!(position, i64), name!(sha256, String))> {
    TableIterator::new(audit::chain_head().or_raise())
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION ambient.audit_chain_head() FROM PUBLIC;
"#,
    name = "audit_chain_head_private",
    requires = [audit_chain_head],
);

/// Points tag `name` at `model_id` (MLflow's alias): `'project@name'` then
/// stands for that model in predict and deploy. A tag names one model of
/// its project; tagging another model moves it, in one step.
#[pg_extern(volatile, parallel_unsafe)]
fn tag(model_id: i64, name: &str) {
    set_tag(model_id, name, true).or_raise()
}

/// Removes tag `name` from `model_id`. Removing a tag the model does not
/// have is a notice.
#[pg_extern(volatile, parallel_unsafe)]
fn untag(model_id: i64, name: &str) {
    set_tag(model_id, name, false).or_raise()
}

fn check_tag_name(name: &str) -> AmbientResult<()> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_well
        || name.len() > 63
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(AmbientError::invalid(format!(
            "invalid tag name \"{}\"",
            name.escape_default()
        ))
        .hint("a tag starts with a letter and has up to 63 letters, digits, '_', '.' or '-'"));
    }
    Ok(())
}

fn set_tag(model_id: i64, name: &str, on: bool) -> AmbientResult<()> {
    check_tag_name(name)?;
    let caller = Caller::current();
    as_extension_owner(|| {
        let project = lock_model_project(model_id, &caller)?;
        let by = caller.name();
        if on {
            let before = models::set_tag(project.id, name, model_id, &by)?;
            if before == Some(model_id) {
                notice!("model {model_id} is already tagged \"{name}\"");
                return Ok(());
            }
            if let Some(before) = before {
                notice!("tag \"{name}\" moved from model {before} to model {model_id}");
            }
            audit::record(
                Entry::project("tag", &by, &project.name, project.id, project.owner)
                    .model(model_id)
                    .details(serde_json::json!({ "tag": name, "previous_model_id": before })),
            )
        } else if models::remove_tag(project.id, name, model_id)? {
            audit::record(
                Entry::project("untag", &by, &project.name, project.id, project.owner)
                    .model(model_id)
                    .details(serde_json::json!({ "tag": name })),
            )
        } else {
            notice!("model {model_id} is not tagged \"{name}\"");
            Ok(())
        }
    })
}

/// The project of `model_id`, locked for a change by `caller`. Refused in
/// terms of the model, whose project's name a stranger may not learn.
/// Call inside `as_extension_owner`.
fn lock_model_project(model_id: i64, caller: &Caller) -> AmbientResult<Project> {
    let owner = models::owner_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
    if !caller.acts_as(owner.owner) {
        return Err(
            AmbientError::privilege(format!("permission denied for model {model_id}"))
                .hint("only roles with the privileges of its project's owner may change it"),
        );
    }
    let name = projects::name_of(owner.project_id)?;
    let project = projects::lock_for_change(&name, caller)?;
    // Dropped while we waited for the lock.
    if models::project_of(model_id)? != Some(project.id) {
        return Err(models::unknown(model_id));
    }
    Ok(project)
}

/// The model `reference` ('project@tag') names in `project`.
/// Call inside `as_extension_owner`.
pub(super) fn tagged_model(project: &Project, reference: &str) -> AmbientResult<i64> {
    let (name, tag) = reference.rsplit_once('@').unwrap_or(("", reference));
    if name != project.name {
        return Err(AmbientError::invalid(format!(
            "\"{reference}\" names a tag of project \"{name}\", not of \"{}\"",
            project.name
        ))
        .hint("deploy('project', 'project@tag') deploys a tagged model of that project"));
    }
    models::tagged(project.id, tag)?.ok_or_else(|| {
        AmbientError::undefined_object(format!("no model is tagged \"{tag}\" in \"{name}\""))
            .hint("SELECT * FROM ambient.tags lists the tags; ambient.tag(model_id, name) sets one")
    })
}
