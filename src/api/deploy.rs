//! `ambient.deploy` and `ambient.rollback`: append to the deployment log
//! under the project's row lock, so concurrent deploys queue up and other
//! sessions see the change when it commits.

use pgrx::prelude::*;

use crate::catalog::audit::{self, Entry};
use crate::catalog::deployments::{self, NewDeployment};
use crate::catalog::operations::{self, ChallengeEvent};
use crate::catalog::projects::Project;
use crate::catalog::{as_extension_owner, models, projects, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};

enum Choice<'a> {
    Model(i64),
    Strategy(&'static str),
    /// `project@tag`: the model the tag points at.
    Tagged(&'a str),
}

/// Makes `model_id` the live model of `project`; returns the new
/// deployment's model. With `traffic` (between 0 and 1) it starts a canary
/// instead: the model serves that share of the attached tables' keys, and
/// the live model the rest, until `ambient.promote` or `ambient.end_trial`.
#[pg_extern(volatile, parallel_unsafe, name = "deploy")]
fn deploy_model(
    project: &str,
    model_id: i64,
    reason: default!(Option<&str>, "NULL"),
    new_contract: default!(bool, "false"),
    traffic: default!(Option<f64>, "NULL"),
) -> i64 {
    match traffic {
        None => deploy(project, Choice::Model(model_id), reason, new_contract).or_raise(),
        Some(_) if new_contract => AmbientError::invalid("a canary cannot change the input contract")
            .hint("the challenger must take the live model's features; deploy it fully with new_contract => true")
            .raise(),
        Some(share) => {
            let caller = Caller::current();
            as_extension_owner(|| {
                let project = projects::lock_for_change(project, &caller)?;
                super::challenge::start(&project, &caller, model_id, Some(share), reason)?;
                Ok(model_id)
            })
            .or_raise()
        }
    }
}

/// Deploys the project's model with the best score ('best_score', compared
/// numerically, newest on ties), its newest one ('most_recent'), or the
/// one a tag points at ('project@tag').
#[pg_extern(volatile, parallel_unsafe, name = "deploy")]
fn deploy_strategy(
    project: &str,
    strategy: &str,
    reason: default!(Option<&str>, "NULL"),
    new_contract: default!(bool, "false"),
) -> i64 {
    let choice = match strategy {
        "best_score" => Choice::Strategy("best_score"),
        "most_recent" => Choice::Strategy("most_recent"),
        tagged if tagged.contains('@') => Choice::Tagged(tagged),
        other => AmbientError::invalid(format!("unknown deploy strategy \"{other}\""))
            .hint("strategy is 'best_score', 'most_recent' or 'project@tag'; or pass a model_id")
            .raise(),
    };
    deploy(project, choice, reason, new_contract).or_raise()
}

fn deploy(
    project: &str,
    choice: Choice<'_>,
    reason: Option<&str>,
    new_contract: bool,
) -> AmbientResult<i64> {
    let caller = Caller::current();
    as_extension_owner(|| {
        let project = projects::lock_for_change(project, &caller)?;
        let (model_id, strategy) = match choice {
            Choice::Model(id) => {
                if models::project_of(id)? != Some(project.id) {
                    return Err(AmbientError::undefined_object(format!(
                        "model {id} does not exist in project \"{}\"",
                        project.name
                    ))
                    .hint("SELECT model_id, version FROM ambient.models WHERE project = ... lists them"));
                }
                (id, "manual")
            }
            Choice::Tagged(reference) => {
                (super::history::tagged_model(&project, reference)?, "manual")
            }
            Choice::Strategy(strategy) => (
                models::pick(project.id, strategy)?.ok_or_else(|| {
                    AmbientError::not_in_state(format!(
                        "project \"{}\" has no model to pick by {strategy}",
                        project.name
                    ))
                    .hint("a model counts for best_score only with a finite score")
                })?,
                strategy,
            ),
        };
        let live = deployments::live(project.id)?;
        if live.is_some_and(|l| l.model_id == model_id) {
            notice!(
                "version {} is already live in project \"{}\"",
                live.map_or(0, |l| l.model_version),
                project.name
            );
            return Ok(model_id);
        }
        let caller_name = caller.name();
        make_live(
            &project,
            NewDeployment::on_top_of(live, project.id, model_id, strategy, reason, &caller_name),
            new_contract,
        )?;
        Ok(model_id)
    })
}

/// Returns the project to the model that was live before the current
/// deployment. Repeated calls walk further back (C → B → A).
#[pg_extern(volatile, parallel_unsafe)]
fn rollback(
    project: &str,
    reason: default!(Option<&str>, "NULL"),
    new_contract: default!(bool, "false"),
) -> i64 {
    rollback_project(project, reason, new_contract).or_raise()
}

fn rollback_project(project: &str, reason: Option<&str>, new_contract: bool) -> AmbientResult<i64> {
    let caller = Caller::current();
    as_extension_owner(|| {
        let project = projects::lock_for_change(project, &caller)?;
        let nothing_earlier = || {
            AmbientError::not_in_state(format!(
                "project \"{}\" has no earlier deployment to roll back to",
                project.name
            ))
            .hint("SELECT * FROM ambient.deployments WHERE project = ... shows the history")
        };
        let live = deployments::live(project.id)?.ok_or_else(nothing_earlier)?;
        let earlier = deployments::get(live.parent_id.ok_or_else(nothing_earlier)?)?;
        make_live(
            &project,
            NewDeployment {
                project_id: project.id,
                model_id: earlier.model_id,
                previous_model_id: Some(live.model_id),
                parent_id: earlier.parent_id,
                strategy: "rollback",
                reason,
                deployed_by: &caller.name(),
            },
            new_contract,
        )?;
        Ok(earlier.model_id)
    })
}

/// The one way a model becomes live, for deploy, rollback and train: the
/// model must take the project's input contract (its features, in order),
/// because application code passes arrays by position. With `new_contract`
/// the model's features become the contract instead.
/// Call inside `as_extension_owner`, holding the project lock.
pub(super) fn make_live(
    project: &Project,
    deployment: NewDeployment<'_>,
    new_contract: bool,
) -> AmbientResult<()> {
    let model_id = deployment.model_id;
    let features = models::features_of(model_id)?;
    check_contract(project, &features, new_contract)?;
    // Writes to an attached table must not start failing: a model that
    // lacks a column there, or predicts a class its column cannot hold,
    // is refused before it goes live.
    super::attach::check_serves_attached(project, model_id)?;
    // A full deploy or rollback ends a canary or shadow trial: the
    // challenger stops serving.
    if let Some(trial) = operations::latest_challenge(project.id)? {
        let promoted = trial.model_id == model_id;
        operations::log_challenge(ChallengeEvent {
            project_id: project.id,
            model_id: trial.model_id,
            mode: if trial.shadow { "shadow" } else { "canary" },
            traffic: (!trial.shadow).then_some(trial.traffic),
            event: if promoted { "promoted" } else { "ended" },
            by: deployment.deployed_by,
            reason: if promoted {
                deployment.reason
            } else {
                Some("ended by a deploy or rollback of another model")
            },
        })?;
    }
    let deployment_id = deployments::insert(deployment)?;
    if features != project.features {
        projects::set_contract(project.id, model_id)?;
    }
    let action = if deployment.strategy == "rollback" {
        "rollback"
    } else {
        "deploy"
    };
    audit::record(
        Entry::project(
            action,
            deployment.deployed_by,
            &project.name,
            project.id,
            project.owner,
        )
        .model(model_id)
        .reason(deployment.reason)
        .details(serde_json::json!({
            "deployment_id": deployment_id,
            "strategy": deployment.strategy,
            "previous_model_id": deployment.previous_model_id,
            "new_contract": features != project.features,
        })),
    )
}

/// Errors (55000) unless a model with `features` may become live.
pub(super) fn check_contract(
    project: &Project,
    features: &[String],
    new_contract: bool,
) -> AmbientResult<()> {
    // An empty contract: a project from 0.1.0 whose models were all dropped.
    if new_contract || features == project.features.as_slice() || project.features.is_empty() {
        return Ok(());
    }
    Err(AmbientError::not_in_state(format!(
        "the model's features ({}) differ from project \"{}\"'s input contract ({})",
        features.join(", "),
        project.name,
        project.features.join(", ")
    ))
    .hint("predict('project', ARRAY[...]) takes features by position; pass new_contract => true to change what the positions mean"))
}
