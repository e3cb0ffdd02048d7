//! `ambient.train`: read the source as the caller, fit, score on the test
//! split, store the model and its snapshot, and deploy it if asked to.

use std::time::Instant;

use pgrx::prelude::*;
use pgrx::{JsonB, PgRelation};

use super::check_project_name;
use super::deploy::{check_contract, make_live};
use super::model_cache;
use crate::catalog::deployments::NewDeployment;
use crate::catalog::models::{NewModel, NewSnapshot};
use crate::catalog::projects::NewProject;
use crate::catalog::{self, as_extension_owner, deployments, models, projects, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::gucs;
use crate::ml::algorithms::{AlgorithmSpec, Shape};
use crate::ml::dataset::ColumnKind;
use crate::ml::hyperparams::Hyperparams;
use crate::ml::model::{self, FitRequest, Trained};
use crate::ml::{algorithms, artifact, preprocess, stats, Task};
use crate::source::{self, Source};

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn train(
    project: Option<&str>,
    relation: default!(Option<PgRelation>, "NULL"),
    query: default!(Option<&str>, "NULL"),
    target: default!(Option<&str>, "NULL"),
    task: default!(Option<&str>, "NULL"),
    algorithm: default!(Option<&str>, "NULL"),
    hyperparams: default!(Option<JsonB>, "'{}'"),
    features: default!(Option<Vec<Option<String>>>, "NULL"),
    test_size: default!(Option<f64>, "0.25"),
    seed: default!(Option<i64>, "42"),
    deploy: default!(Option<&str>, "'if_better'"),
    new_contract: default!(bool, "false"),
    preprocess: default!(Option<JsonB>, "'{}'"),
) -> TableIterator<
    'static,
    (
        name!(model_id, i64),
        name!(version, i32),
        name!(algorithm, String),
        name!(metrics, JsonB),
        name!(deployed, bool),
    ),
> {
    let request = TrainRequest::parse(
        project,
        relation,
        query,
        target,
        task,
        algorithm,
        hyperparams,
        features,
        test_size,
        seed,
        deploy,
        new_contract,
        preprocess,
    )
    .or_raise();
    let outcome = run(request).or_raise();
    TableIterator::once((
        outcome.model_id,
        outcome.version,
        outcome.algorithm,
        JsonB(outcome.metrics),
        outcome.deployed,
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DeployPolicy {
    IfBetter,
    Always,
    Never,
}

struct TrainRequest {
    project: String,
    source: Source,
    target: Option<String>,
    task: Option<Task>,
    /// `None`: the default for the task.
    algorithm: Option<String>,
    hyperparams: serde_json::Value,
    features: Option<Vec<String>>,
    test_size: f64,
    seed: i64,
    deploy: DeployPolicy,
    /// Whether the model may go live with other features than the project's
    /// input contract, and make them the contract.
    new_contract: bool,
    /// Per-column preprocessing options, over the algorithm's defaults.
    preprocess: serde_json::Value,
}

impl TrainRequest {
    #[allow(clippy::too_many_arguments)]
    fn parse(
        project: Option<&str>,
        relation: Option<PgRelation>,
        query: Option<&str>,
        target: Option<&str>,
        task: Option<&str>,
        algorithm: Option<&str>,
        hyperparams: Option<JsonB>,
        features: Option<Vec<Option<String>>>,
        test_size: Option<f64>,
        seed: Option<i64>,
        deploy: Option<&str>,
        new_contract: bool,
        preprocess: Option<JsonB>,
    ) -> AmbientResult<Self> {
        let required = |name: &str| AmbientError::null_value(format!("{name} must not be NULL"));
        let project = project.ok_or_else(|| required("project"))?;
        check_project_name(project)?;
        let source = match (relation, query) {
            (Some(rel), None) => Source::Relation(rel),
            (None, Some(q)) => Source::query(q)?,
            _ => {
                return Err(
                    AmbientError::invalid("give exactly one of relation and query")
                        .hint("relation => 'my_table' or query => 'SELECT ...'"),
                )
            }
        };
        let deploy = match deploy.ok_or_else(|| required("deploy"))? {
            "if_better" => DeployPolicy::IfBetter,
            "always" => DeployPolicy::Always,
            "never" => DeployPolicy::Never,
            other => {
                return Err(
                    AmbientError::invalid(format!("unknown deploy policy \"{other}\""))
                        .hint("deploy is 'if_better', 'always' or 'never'"),
                )
            }
        };
        Ok(TrainRequest {
            project: project.to_string(),
            source,
            target: target.map(str::to_string),
            task: task.map(Task::parse).transpose()?,
            algorithm: algorithm.map(str::to_string),
            hyperparams: hyperparams.map(|j| j.0).unwrap_or(serde_json::Value::Null),
            features: features
                .map(|list| list.into_iter().collect::<Option<Vec<String>>>())
                .map(|list| list.ok_or_else(|| required("an element of features")))
                .transpose()?,
            test_size: test_size.ok_or_else(|| required("test_size"))?,
            seed: seed.ok_or_else(|| required("seed"))?,
            deploy,
            new_contract,
            preprocess: preprocess.map(|j| j.0).unwrap_or(serde_json::Value::Null),
        })
    }
}

struct Outcome {
    model_id: i64,
    version: i32,
    algorithm: String,
    metrics: serde_json::Value,
    deployed: bool,
}

fn run(req: TrainRequest) -> AmbientResult<Outcome> {
    let caller = Caller::current();
    catalog::ensure_writable()?;
    // Checked now so a stranger fails before a long fit, and again below
    // holding the project lock.
    let existing = projects::find(&req.project)?;
    if let Some(p) = &existing {
        projects::authorize_change(p, &caller)?;
    }
    let target = match (&existing, &req.target) {
        (Some(p), _) => p.target.clone(),
        (None, Some(target)) => target.clone(),
        (None, None) => {
            return Err(AmbientError::null_value(format!(
                "target must be given on the first train of project \"{}\"",
                req.project
            ))
            .hint("name the label column: target => 'column'"))
        }
    };
    if let Some(p) = &existing {
        check_fits(p, req.target.as_deref(), req.task)?;
    }
    // Reject a bad algorithm or hyper-parameter before reading any data,
    // when the task is known before the data is.
    if let Some(task) = existing.as_ref().map(|p| p.task).or(req.task) {
        choose_algorithm(&req, task)?;
    }
    let budget = gucs::max_training_memory_bytes();

    let loaded = source::load(&source::Request {
        source: &req.source,
        target: &target,
        task: existing.as_ref().map(|p| p.task).or(req.task),
        features: req.features.as_deref(),
        limits: source::Limits {
            max_rows: gucs::max_training_rows(),
            max_bytes: budget,
            max_classes: gucs::max_classes(),
        },
    })?;
    if loaded.unlabeled > 0 {
        notice!(
            "skipped {} row(s) whose \"{}\" is NULL (unlabeled)",
            loaded.unlabeled,
            target
        );
    }
    let data = &loaded.dataset;
    let (spec, params) = choose_algorithm(&req, data.task())?;
    let threads = gucs::training_threads();
    let shape = Shape {
        rows: data.n_rows(),
        features: data.width(),
        classes: data.encoding().map_or(0, |e| e.classes.len()),
        threads,
    };
    let columns: Vec<(String, ColumnKind)> = data
        .feature_names
        .iter()
        .cloned()
        .zip(data.kinds.iter().copied())
        .collect();
    let preprocess = preprocess::parse_options(&req.preprocess, &columns, spec.scales_inputs)?;
    // While the fit runs, the raw data, its encoded copy and what the
    // algorithm itself needs are held at once.
    let width = preprocess::max_width(data, &preprocess);
    let shape = Shape {
        features: width,
        ..shape
    };
    let needed = data.records.len() as u64 * 8
        + (shape.rows * width) as u64 * 8
        + (spec.estimated_bytes)(&shape, &params);
    if needed > budget {
        return Err(source::too_much_memory(
            &format!("training {} on {} rows", spec.name, shape.rows),
            needed,
            budget,
        ));
    }
    // The project is created or locked before the fit, and stays locked
    // until the transaction ends: trains, deploys and rollbacks of one
    // project queue behind it, and one whose snapshot is too old fails now
    // with 40001, not after its fit. While the data was read, the project
    // may have been created, or dropped and created again, by another role,
    // or with another target or task.
    let project = as_extension_owner(|| {
        let project = match &existing {
            Some(_) => projects::lock(&req.project)?,
            None => projects::create_and_lock(
                NewProject {
                    name: &req.project,
                    task: data.task(),
                    target: &target,
                    features: &data.feature_names,
                    feature_types: &loaded.feature_types,
                },
                &caller,
            )?,
        };
        projects::authorize_change(&project, &caller)?;
        check_fits(&project, Some(&target), Some(data.task()))?;
        Ok(project)
    })?;
    let interrupts = source::check_interrupts();
    let started = Instant::now();
    let trained = model::train(
        data,
        &FitRequest {
            algorithm: spec,
            params: &params,
            test_size: req.test_size,
            seed: req.seed as u64,
            threads,
            // The project's input contract keys the split, so a row keeps
            // its side when a later model uses more columns.
            split_key: &project.features,
            preprocess: &preprocess,
        },
        &interrupts,
    )?;
    let training_seconds = started.elapsed().as_secs_f64();
    let Trained {
        model,
        split,
        metrics,
        permutation,
    } = trained;
    let primary = data.task().primary_metric();
    let score = metrics.get(primary).copied().unwrap_or(f64::NAN);
    let bytes = artifact::encode(&model)?;
    let sha = artifact::sha256_hex(&bytes);
    let importance = serde_json::Value::Object(
        model
            .input_names()
            .into_iter()
            .zip(permutation)
            .map(|(name, drop)| (name.to_string(), serde_json::json!(drop)))
            .collect(),
    );
    let column_stats = serde_json::to_value(stats::describe(
        data,
        &target,
        loaded.unlabeled,
        &interrupts,
    )?)
    .unwrap_or(serde_json::Value::Null);
    interrupts.check()?;
    let data_sha256 = data.sha256_hex(&interrupts)?;
    let caller_name = caller.name();

    as_extension_owner(|| {
        let snapshot_id = models::insert_snapshot(NewSnapshot {
            project_id: project.id,
            source_kind: req.source.kind(),
            source: &req.source.describe(),
            row_count: data.n_rows() as i64,
            unlabeled_rows: loaded.unlabeled as i64,
            column_stats,
            data_sha256: &data_sha256,
            created_by: &caller_name,
        })?;
        let (model_id, version) = models::insert(NewModel {
            project_id: project.id,
            algorithm: spec.name,
            hyperparams: params.to_json(),
            features: data.feature_names.clone(),
            feature_types: loaded.feature_types.clone(),
            preprocessing: model.inputs.describe(),
            importance,
            label_classes: data.encoding().map(|e| e.classes.clone()),
            metrics: serde_json::to_value(&metrics).unwrap_or_default(),
            primary_metric: primary,
            score,
            test_size: req.test_size,
            seed: req.seed,
            train_rows: split.train.len() as i64,
            test_rows: split.test.len() as i64,
            training_seconds,
            snapshot_id,
            artifact: bytes,
            artifact_sha256: sha,
            created_by: &caller_name,
        })?;

        let live = deployments::live(project.id)?;
        let contract_refusal =
            check_contract(&project, &data.feature_names, req.new_contract).err();
        let deploy = match (req.deploy, live) {
            (DeployPolicy::Never, _) => false,
            _ if contract_refusal.is_some() => {
                notice!(
                    "not deploying: {}; train with new_contract => true to deploy it",
                    contract_refusal.as_ref().map_or("", AmbientError::message)
                );
                false
            }
            (DeployPolicy::Always, _) | (DeployPolicy::IfBetter, None) => true,
            (DeployPolicy::IfBetter, Some(live)) => {
                let champion = model_cache::load_latest(live.model_id)?;
                match champion.evaluate(data, &split.test) {
                    Ok(champion_metrics) => {
                        let champion_score =
                            champion_metrics.get(primary).copied().unwrap_or(f64::NAN);
                        notice!(
                            "{primary} on the same {} test rows: new model {score:.4}, live model (version {}) {champion_score:.4}",
                            split.test.len(),
                            live.model_version
                        );
                        is_better(score, champion_score)
                    }
                    Err(e) => {
                        notice!(
                            "live model (version {}) cannot be scored on this data ({}); not deploying",
                            live.model_version,
                            e.message
                        );
                        false
                    }
                }
            }
        };
        if deploy {
            let strategy = match req.deploy {
                DeployPolicy::Always => "always",
                _ => "if_better",
            };
            make_live(
                &project,
                NewDeployment::on_top_of(live, project.id, model_id, strategy, None, &caller_name),
                req.new_contract,
            )?;
        }
        Ok(Outcome {
            model_id,
            version,
            algorithm: spec.name.to_string(),
            metrics: serde_json::to_value(&metrics).unwrap_or_default(),
            deployed: deploy,
        })
    })
}

/// The algorithm asked for (or the task's default) and its validated
/// hyper-parameters.
fn choose_algorithm(
    req: &TrainRequest,
    task: Task,
) -> AmbientResult<(&'static AlgorithmSpec, Hyperparams)> {
    let spec = algorithms::lookup(
        req.algorithm
            .as_deref()
            .unwrap_or_else(|| algorithms::default_for(task)),
    )?;
    let params = Hyperparams::validate(spec.name, spec.params(task)?, &req.hyperparams)?;
    Ok((spec, params))
}

/// Whether a challenger's score beats the champion's. A score that is not a
/// number (a metric undefined on these rows) never wins, and always loses.
fn is_better(challenger: f64, champion: f64) -> bool {
    challenger.is_finite() && (!champion.is_finite() || challenger > champion)
}

/// Errors unless a train request fits the project: same target, same task.
fn check_fits(
    project: &projects::Project,
    asked_target: Option<&str>,
    asked_task: Option<Task>,
) -> AmbientResult<()> {
    if let Some(asked) = asked_target {
        if asked != project.target {
            return Err(AmbientError::invalid(format!(
                "project \"{}\" predicts \"{}\", not \"{asked}\"",
                project.name, project.target
            ))
            .hint("leave target out, or train a new project"));
        }
    }
    if let Some(task) = asked_task.filter(|&t| t != project.task) {
        return Err(AmbientError::invalid(format!(
            "project \"{}\" is a {} project, not {}",
            project.name,
            project.task.as_str(),
            task.as_str()
        )));
    }
    Ok(())
}
