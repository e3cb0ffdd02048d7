//! Canary and shadow trials. `ambient.deploy(..., traffic => 0.1)` serves a
//! challenger to a stable tenth of the keys of the attached tables (their
//! primary key decides, so a key always gets the same model, and each row
//! records the model that answered); `ambient.shadow` has the challenger
//! predict every row beside the live model, into
//! `ambient.shadow_predictions`, without serving it. `ambient.compare`
//! scores both on the same labelled rows; `ambient.promote` makes the
//! challenger live, `ambient.end_trial` stops the trial. Every step is a
//! row in `ambient.challenges`, in the caller's transaction.

use pgrx::prelude::*;
use pgrx::JsonB;

use super::deploy::{check_contract, make_live};
use super::monitor;
use crate::catalog::audit::{self, Entry};
use crate::catalog::deployments::{self, NewDeployment};
use crate::catalog::operations::{self, ChallengeEvent};
use crate::catalog::projects::{self, Project};
use crate::catalog::{as_extension_owner, attachments, ensure_writable, models, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};

/// Starts a trial of `model_id`: a canary serving `traffic` of the keys,
/// or (`traffic` None) a shadow. Call inside `as_extension_owner`.
pub(super) fn start(
    project: &Project,
    caller: &Caller,
    model_id: i64,
    traffic: Option<f64>,
    reason: Option<&str>,
) -> AmbientResult<()> {
    if let Some(t) = traffic {
        if !(t > 0.0 && t < 1.0) {
            return Err(AmbientError::invalid(format!("traffic must be between 0 and 1, exclusive, got {t}"))
                .hint("traffic is the share of keys the challenger serves; deploy without it to serve every key"));
        }
    }
    if models::project_of(model_id)? != Some(project.id) {
        return Err(AmbientError::undefined_object(format!(
            "model {model_id} does not exist in project \"{}\"",
            project.name
        )));
    }
    // Read as committed now: the lock was waited for, and a trial another
    // session started meanwhile must be seen.
    if let Some(running) = operations::latest_challenge(project.id)? {
        return Err(AmbientError::not_in_state(format!(
            "project \"{}\" already has a {} trial of model {}",
            project.name,
            if running.shadow { "shadow" } else { "canary" },
            running.model_id
        ))
        .hint("finish it with ambient.promote(project) or ambient.end_trial(project) first"));
    }
    let live = deployments::live(project.id)?.ok_or_else(|| {
        AmbientError::not_in_state(format!(
            "project \"{}\" has no live model to challenge",
            project.name
        ))
    })?;
    if live.model_id == model_id {
        return Err(AmbientError::not_in_state(format!(
            "model {model_id} is the live model"
        )));
    }
    check_contract(project, &models::features_of(model_id)?, false)?;
    // A challenger serves (or shadows) every write too.
    super::attach::check_serves_attached(project, model_id)?;
    if traffic.is_some() {
        for a in attachments::of_project(project.id)? {
            if attachments::relation_name(a.relation).is_some() && !has_primary_key(a.relation) {
                return Err(AmbientError::not_in_state(format!(
                    "attached table {} has no primary key to route a canary by",
                    attachments::relation_name(a.relation).unwrap_or_default()
                ))
                .hint("add a primary key, or run a shadow trial instead"));
            }
        }
    }
    operations::log_challenge(ChallengeEvent {
        project_id: project.id,
        model_id,
        mode: if traffic.is_some() {
            "canary"
        } else {
            "shadow"
        },
        traffic,
        event: "started",
        by: &caller.name(),
        reason,
    })?;
    audit::record(
        Entry::project(
            if traffic.is_some() {
                "start canary"
            } else {
                "start shadow"
            },
            &caller.name(),
            &project.name,
            project.id,
            project.owner,
        )
        .model(model_id)
        .reason(reason)
        .details(serde_json::json!({ "traffic": traffic, "live_model_id": live.model_id })),
    )
}

fn has_primary_key(relation: pg_sys::Oid) -> bool {
    // SAFETY: opens the relation to read its relcache entry, and closes it.
    unsafe {
        let rel = pg_sys::relation_open(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let key = pg_sys::RelationGetIndexAttrBitmap(
            rel,
            pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_PRIMARY_KEY,
        );
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        !key.is_null()
    }
}

/// Runs `change` on the project, locked, once the caller is known to own
/// it. The caller is taken before switching to the extension owner, whose
/// rights are not the caller's.
fn with_locked<R>(
    project: &str,
    change: impl FnOnce(&Project, &Caller) -> AmbientResult<R>,
) -> AmbientResult<R> {
    ensure_writable()?;
    let caller = Caller::current();
    as_extension_owner(|| {
        let project = projects::lock_for_change(project, &caller)?;
        change(&project, &caller)
    })
}

/// Has `model_id` predict every row written to the project's attached
/// tables beside the live model, without serving it.
#[pg_extern(volatile, parallel_unsafe)]
fn shadow(project: &str, model_id: i64) -> i64 {
    with_locked(project, |project, caller| {
        start(project, caller, model_id, None, None)?;
        Ok(model_id)
    })
    .or_raise()
}

fn running(project: &Project) -> AmbientResult<operations::Challenge> {
    operations::latest_challenge(project.id)?.ok_or_else(|| {
        AmbientError::not_in_state(format!("project \"{}\" has no canary or shadow trial", project.name))
            .hint("start one with ambient.deploy(project, model_id, traffic => 0.1) or ambient.shadow(project, model_id)")
    })
}

/// Ends the running trial by making its challenger the live model.
#[pg_extern(volatile, parallel_unsafe)]
fn promote(project: &str, reason: default!(Option<&str>, "NULL")) -> i64 {
    with_locked(project, |project, caller| {
        let trial = running(project)?;
        let mode = if trial.shadow { "shadow" } else { "canary" };
        let note = format!(
            "promoted from its {mode} trial{}",
            reason.map_or(String::new(), |r| format!(": {r}"))
        );
        // make_live ends the trial, as promoted.
        make_live(
            project,
            NewDeployment::on_top_of(
                deployments::live(project.id)?,
                project.id,
                trial.model_id,
                "manual",
                Some(&note),
                &caller.name(),
            ),
            false,
        )?;
        Ok(trial.model_id)
    })
    .or_raise()
}

/// Ends the running trial; the live model serves every key again.
#[pg_extern(volatile, parallel_unsafe)]
fn end_trial(project: &str, reason: default!(Option<&str>, "NULL")) -> i64 {
    with_locked(project, |project, caller| {
        let trial = running(project)?;
        operations::log_challenge(ChallengeEvent {
            project_id: project.id,
            model_id: trial.model_id,
            mode: if trial.shadow { "shadow" } else { "canary" },
            traffic: (!trial.shadow).then_some(trial.traffic),
            event: "ended",
            by: &caller.name(),
            reason,
        })?;
        audit::record(
            Entry::project(
                "end trial",
                &caller.name(),
                &project.name,
                project.id,
                project.owner,
            )
            .model(trial.model_id)
            .reason(reason),
        )?;
        Ok(trial.model_id)
    })
    .or_raise()
}

/// The champion and the challenger of the running trial, each scored on
/// the same labelled rows of the attached tables: every row either of
/// them predicted, both predicting it afresh.
#[pg_extern(volatile, parallel_unsafe)]
fn compare(
    project: &str,
) -> TableIterator<
    'static,
    (
        name!(role, String),
        name!(model_id, i64),
        name!(version, i32),
        name!(labelled_rows, i64),
        name!(metrics, JsonB),
    ),
> {
    TableIterator::new(compare_trial(project).or_raise())
}

/// (role, model id, version, labelled rows, metrics).
type Scored = (String, i64, i32, i64, JsonB);

fn compare_trial(project: &str) -> AmbientResult<Vec<Scored>> {
    let caller = Caller::current();
    let found = projects::require(project)?;
    projects::authorize_change(&found, &caller)?;
    let (trial, champion) = as_extension_owner(|| {
        let trial = running(&found)?;
        let champion = deployments::live(found.id)?
            .ok_or_else(|| AmbientError::not_in_state("no live model"))?;
        Ok((trial, champion))
    })?;
    let ids = [champion.model_id, trial.model_id];
    let (counts, rows) = monitor::score_labelled_rows(&found, &ids, &ids)?;
    ["champion", "challenger"]
        .iter()
        .zip(ids)
        .zip(counts)
        .map(|((role, id), c)| {
            let version = as_extension_owner(|| attachments::version_of(id))?.unwrap_or_default();
            let metrics = serde_json::to_value(c.metrics())
                .map_err(|e| AmbientError::invalid(e.to_string()))?;
            Ok((role.to_string(), id, version, rows, JsonB(metrics)))
        })
        .collect()
}
