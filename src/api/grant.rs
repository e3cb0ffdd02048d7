//! `ambient.grant` and `ambient.revoke`: who besides the owners may use a
//! project. Owners (roles with the owning role's privileges) may predict,
//! read and change it; a grant lets another role predict ('predict') or
//! also read its models, snapshots and history ('read').

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::audit::{self, Entry};
use crate::catalog::projects::{self, Privilege};
use crate::catalog::{as_extension_owner, models, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};

/// Lets `role` use `project`. Granting what a role already has is a notice,
/// not an error.
#[pg_extern(volatile, parallel_unsafe, name = "grant")]
fn grant_project(project: &str, role: &str, privilege: default!(&str, "'predict'")) {
    change_grant(project, role, privilege, true).or_raise()
}

/// Takes back what `grant` gave. Revoking what was never granted is a
/// notice, not an error.
#[pg_extern(volatile, parallel_unsafe, name = "revoke")]
fn revoke_project(project: &str, role: &str, privilege: default!(&str, "'predict'")) {
    change_grant(project, role, privilege, false).or_raise()
}

fn change_grant(project: &str, role: &str, privilege: &str, give: bool) -> AmbientResult<()> {
    let privilege = Privilege::parse(privilege)?;
    let c_name = std::ffi::CString::new(role)
        .map_err(|_| AmbientError::invalid("role name contains a NUL character"))?;
    // SAFETY: looks the name up in the role cache; an unknown role is a
    // Postgres ERROR (42704) naming it.
    let role_oid = unsafe { pg_sys::get_role_oid(c_name.as_ptr(), false) };
    if super::features::is_feature_set(project)? {
        return super::features::change_grant(project, role_oid, role, privilege, give);
    }
    let caller = Caller::current();
    as_extension_owner(|| {
        let project = projects::lock_for_change(project, &caller)?;
        let changed = if give {
            projects::grant(project.id, role_oid, privilege, &caller)?
        } else {
            projects::revoke(project.id, role_oid, privilege)?
        };
        if changed && privilege == Privilege::Read {
            // Copies of training rows follow the project's read rules.
            models::share_copies_with(project.id, role_oid, give)?;
        }
        if changed {
            audit::record(
                Entry::project(
                    if give { "grant" } else { "revoke" },
                    &caller.name(),
                    &project.name,
                    project.id,
                    project.owner,
                )
                .details(serde_json::json!({ "role": role, "privilege": privilege.as_str() })),
            )?;
        } else {
            notice!(
                "role \"{role}\" {} \"{}\" on project \"{}\"",
                if give {
                    "already has"
                } else {
                    "has no grant of"
                },
                privilege.as_str(),
                project.name
            );
        }
        Ok(())
    })
}
