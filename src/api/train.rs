//! `ambient.train`: read the source as the caller, fit, score on the test
//! split, store the model and its snapshot, and deploy it if asked to.

use std::rc::Rc;
use std::time::Instant;

use pgrx::prelude::*;
use pgrx::{JsonB, PgRelation};

use super::check_project_name;
use super::deploy::{check_contract, make_live};
use super::model_cache;
use super::subtransaction::{rolled_back, Failure};
use crate::catalog::audit::{self, Entry};
use crate::catalog::deployments::NewDeployment;
use crate::catalog::feature_sets;
use crate::catalog::models::{NewModel, NewSnapshot, NewTrial};
use crate::catalog::projects::NewProject;
use crate::catalog::{
    self, as_author, as_extension_owner, deployments, models, projects, Author, Caller,
};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::gucs;
use crate::ml::algorithms::{AlgorithmSpec, Shape};
use crate::ml::dataset::ColumnKind;
use crate::ml::dataset::Dataset;
use crate::ml::hyperparams::Hyperparams;
use crate::ml::model::{self, FitRequest, Model, Trained};
use crate::ml::preprocess::{ColumnOptions, InputStyle};
use crate::ml::search::{self, Candidate, CrossValidation, Status, Strategy, Trial};
use crate::ml::split;
use crate::ml::{algorithms, artifact, preprocess, stats, MemoryBudget, MlError, Task};
use crate::source::{self, Loaded, Source};

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
    search: default!(Option<&str>, "NULL"),
    search_params: default!(Option<JsonB>, "NULL"),
    search_iterations: default!(Option<i32>, "10"),
    folds: default!(Option<i32>, "5"),
    budget_seconds: default!(Option<f64>, "NULL"),
    training_set: default!(Option<&str>, "NULL"),
    snapshot: default!(Option<&str>, "'hash'"),
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
        SearchArgs {
            search,
            search_params,
            search_iterations,
            folds,
            budget_seconds,
        },
        training_set,
        snapshot,
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

/// What a model's snapshot keeps of its training rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SnapshotMode {
    /// Their statistics and sha256.
    Hash,
    /// Also a copy of them, in a catalog-owned table (`ambient_snapshots`).
    Copy,
}

impl SnapshotMode {
    fn parse(text: &str) -> AmbientResult<SnapshotMode> {
        match text {
            "hash" => Ok(SnapshotMode::Hash),
            "copy" => Ok(SnapshotMode::Copy),
            other => Err(AmbientError::invalid(format!("unknown snapshot \"{other}\""))
                .hint("snapshot is 'hash' (statistics and a sha256 of the rows) or 'copy' (also the rows)")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SnapshotMode::Hash => "hash",
            SnapshotMode::Copy => "copy",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum DeployPolicy {
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
    /// How candidates are chosen, when more than one is tried.
    strategy: Option<Strategy>,
    search_params: serde_json::Value,
    folds: usize,
    budget_seconds: Option<f64>,
    /// The model a policy retrains this one from.
    parent_model_id: Option<i64>,
    /// Who a stored definition that runs again runs as; `None` for a
    /// person's call, which reads as the caller.
    author: Option<Author>,
    snapshot: SnapshotMode,
}

/// train's model-selection arguments, as SQL passes them.
struct SearchArgs<'a> {
    search: Option<&'a str>,
    search_params: Option<JsonB>,
    search_iterations: Option<i32>,
    folds: Option<i32>,
    budget_seconds: Option<f64>,
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
        search: SearchArgs<'_>,
        training_set: Option<&str>,
        snapshot: Option<&str>,
    ) -> AmbientResult<Self> {
        let required = |name: &str| AmbientError::null_value(format!("{name} must not be NULL"));
        let project = project.ok_or_else(|| required("project"))?;
        check_project_name(project)?;
        // A training set gives the label and the features by default: its
        // row features and the feature sets' features, not its keys.
        let mut target = target.map(str::to_string);
        let mut default_features = None;
        let source = match (relation, query, training_set) {
            (Some(rel), None, None) => Source::Relation(rel),
            (None, Some(q), None) => Source::query(q)?,
            (None, None, Some(name)) => {
                let (set, _) = super::features::training_set_for_train(name)?;
                target = target.or_else(|| set.label.clone());
                let mut columns = set.passed.clone();
                columns.extend(set.features.iter().map(|f| f.feature.clone()));
                default_features = Some(columns);
                Source::training_set(name)?
                    .ok_or_else(|| feature_sets::unknown_training_set(name))?
            }
            _ => {
                return Err(AmbientError::invalid(
                    "give exactly one of relation, query and training_set",
                )
                .hint("relation => 'my_table', query => 'SELECT ...' or training_set => 'name'"))
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
        let hyperparams = hyperparams.map(|j| j.0).unwrap_or(serde_json::Value::Null);
        let auto = algorithm == Some("auto");
        let strategy = match (auto, search.search) {
            (true, None) => Some(Strategy::Auto),
            (true, Some(_)) => {
                return Err(AmbientError::invalid(
                    "algorithm => 'auto' compares algorithms, and search tunes one",
                )
                .hint("name one algorithm to search its hyper-parameters"))
            }
            (false, None) => None,
            (false, Some("grid")) => Some(Strategy::Grid),
            (false, Some("random")) => {
                let iterations = search
                    .search_iterations
                    .ok_or_else(|| required("search_iterations"))?;
                if !(1..=10_000).contains(&iterations) {
                    return Err(AmbientError::invalid(format!(
                        "search_iterations must be from 1 to 10000, got {iterations}"
                    )));
                }
                Some(Strategy::Random {
                    iterations: iterations as usize,
                })
            }
            (false, Some(other)) => {
                return Err(AmbientError::invalid(format!("unknown search \"{other}\""))
                    .hint("search is 'grid' or 'random'; algorithm => 'auto' compares algorithms"))
            }
        };
        let search_params = search.search_params.map(|j| j.0);
        match (&strategy, &search_params) {
            (Some(Strategy::Grid | Strategy::Random { .. }), None) => {
                return Err(AmbientError::invalid("a search needs search_params")
                    .hint(r#"e.g. search_params => '{"max_depth": [4, 8, 16]}'"#))
            }
            (None | Some(Strategy::Auto), Some(_)) => {
                return Err(AmbientError::invalid(
                    "search_params needs search => 'grid' or 'random'",
                ))
            }
            _ => {}
        }
        let hyperparams_given = match &hyperparams {
            serde_json::Value::Null => false,
            serde_json::Value::Object(map) => !map.is_empty(),
            _ => true,
        };
        if auto && hyperparams_given {
            return Err(AmbientError::invalid(
                "algorithm => 'auto' tries each algorithm with its defaults, so it takes no hyperparams",
            )
            .hint("to tune one algorithm, name it and pass search => 'grid' or 'random'"));
        }
        let folds = search.folds.ok_or_else(|| required("folds"))?;
        if folds < 2 {
            return Err(AmbientError::invalid(format!(
                "folds must be at least 2, got {folds}"
            )));
        }
        if let Some(budget) = search.budget_seconds {
            if !(budget > 0.0 && budget.is_finite()) {
                return Err(AmbientError::invalid(format!(
                    "budget_seconds must be a positive number of seconds, got {budget}"
                )));
            }
        }
        Ok(TrainRequest {
            project: project.to_string(),
            source,
            target,
            task: task.map(Task::parse).transpose()?,
            algorithm: algorithm.filter(|_| !auto).map(str::to_string),
            hyperparams,
            strategy,
            search_params: search_params.unwrap_or(serde_json::Value::Null),
            folds: folds as usize,
            budget_seconds: search.budget_seconds,
            features: features
                .map(|list| list.into_iter().collect::<Option<Vec<String>>>())
                .map(|list| list.ok_or_else(|| required("an element of features")))
                .transpose()?
                .or(default_features),
            test_size: test_size.ok_or_else(|| required("test_size"))?,
            seed: seed.ok_or_else(|| required("seed"))?,
            deploy,
            new_contract,
            preprocess: preprocess.map(|j| j.0).unwrap_or(serde_json::Value::Null),
            parent_model_id: None,
            author: None,
            snapshot: SnapshotMode::parse(snapshot.ok_or_else(|| required("snapshot"))?)?,
        })
    }

    /// A model's training definition again, on the current data, as its
    /// author: the source is resolved and read with the author's rights
    /// and search_path. Features it left to the default are the project's
    /// input contract, so columns added since (an attached table's
    /// predictions among them) never become features.
    fn again(
        project: &projects::Project,
        definition: &models::Definition,
        deploy: DeployPolicy,
    ) -> AmbientResult<Self> {
        let name = project.name.as_str();
        let request = &definition.request;
        let unreadable = |what: &str| {
            AmbientError::invalid(format!(
                "the training definition of project \"{name}\" has no usable {what}"
            ))
        };
        let source = as_author(&definition.author, || {
            Source::stored(&definition.source_kind, &definition.source)
        })?
        .ok_or_else(|| {
            AmbientError::undefined_table(format!(
                "the training source {} of project \"{name}\" no longer exists",
                definition.source
            ))
        })?;
        let text = |key: &str| request.get(key).and_then(serde_json::Value::as_str);
        let strategy = match (text("algorithm"), text("search")) {
            (Some("auto"), _) => Some(Strategy::Auto),
            (_, Some("grid")) => Some(Strategy::Grid),
            (_, Some("random")) => Some(Strategy::Random {
                iterations: request
                    .get("search_iterations")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| unreadable("search_iterations"))?
                    as usize,
            }),
            _ => None,
        };
        let features = match request.get("features") {
            Some(serde_json::Value::Array(list)) => Some(
                list.iter()
                    .map(|f| {
                        f.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| unreadable("features"))
                    })
                    .collect::<AmbientResult<Vec<_>>>()?,
            ),
            _ => Some(project.features.clone()).filter(|contract| !contract.is_empty()),
        };
        Ok(TrainRequest {
            project: name.to_string(),
            source,
            target: None,
            task: None,
            algorithm: text("algorithm")
                .filter(|a| *a != "auto")
                .map(str::to_string),
            hyperparams: request.get("hyperparams").cloned().unwrap_or_default(),
            features,
            test_size: request
                .get("test_size")
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| unreadable("test_size"))?,
            seed: request
                .get("seed")
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| unreadable("seed"))?,
            deploy,
            new_contract: false,
            preprocess: request.get("preprocess").cloned().unwrap_or_default(),
            strategy,
            search_params: request.get("search_params").cloned().unwrap_or_default(),
            folds: request
                .get("folds")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(5) as usize,
            budget_seconds: request
                .get("budget_seconds")
                .and_then(serde_json::Value::as_f64),
            parent_model_id: Some(definition.model_id),
            author: Some(definition.author.clone()),
            snapshot: SnapshotMode::parse(text("snapshot").unwrap_or("hash"))?,
        })
    }
}

/// A retrained model: its id and version, and whether it went live.
pub(super) struct Retrained {
    pub model_id: i64,
    pub version: i32,
    pub deployed: bool,
}

/// Trains `project` again the way its live model `live` was trained
/// (source, features, algorithm or search, hyper-parameters,
/// preprocessing, test size and seed) on the data as it is now, as that
/// definition's author, recording `live` as the model it retrains. Never
/// the definition of a newer model that was rejected, rolled back or never
/// deployed: a person's rollback stands, and "if better" compares both
/// models on the live definition's rows.
pub(super) fn retrain(
    project: &projects::Project,
    definition: &models::Definition,
    deploy: DeployPolicy,
) -> AmbientResult<Retrained> {
    let outcome = run(TrainRequest::again(project, definition, deploy)?)?;
    Ok(Retrained {
        model_id: outcome.model_id,
        version: outcome.version,
        deployed: outcome.deployed,
    })
}

/// The live model's training definition, or why it has none.
pub(super) fn live_definition(
    project: &projects::Project,
    live_model: i64,
) -> AmbientResult<models::Definition> {
    as_extension_owner(|| models::definition(live_model))?.ok_or_else(|| {
        AmbientError::not_in_state(format!(
            "the live model of project \"{}\" has no training definition to run again",
            project.name
        ))
        .hint("models trained before 0.2.0 kept none; train once with ambient.train and deploy it")
    })
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
        projects::authorize_train(p, &caller)?;
    } else if req.project.contains('@') {
        // 'project@tag' names a tagged model: a project so named could
        // stand in for another project's tag.
        return Err(AmbientError::invalid(format!(
            "a new project's name cannot contain '@', got \"{}\"",
            req.project
        ))
        .hint("'project@tag' names the model a tag points at"));
    } else if feature_sets::find(&req.project)?.is_some() {
        return Err(AmbientError::duplicate_object(format!(
            "\"{}\" is already a feature set's name",
            req.project
        ))
        .hint("feature sets and projects share names, so ambient.grant knows which you mean"));
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
    // Reject a bad algorithm, hyper-parameter or search space before
    // reading any data, when the task is known before the data is.
    if let Some(task) = existing.as_ref().map(|p| p.task).or(req.task) {
        plan(&req, task, 0)?;
    }
    let budget = gucs::max_training_memory_bytes();
    let limits = source::Limits {
        max_rows: gucs::max_training_rows(),
        max_bytes: budget,
        max_classes: gucs::max_classes(),
    };
    let request = source::Request {
        source: &req.source,
        target: &target,
        task: existing.as_ref().map(|p| p.task).or(req.task),
        features: req.features.as_deref(),
        limits,
    };
    // With snapshot => 'copy' the rows are copied first, by the reader,
    // and the model is trained from the copy, so the copy is exactly what
    // it saw.
    let load = || match req.snapshot {
        SnapshotMode::Hash => Ok((source::load(&request)?, None)),
        SnapshotMode::Copy => {
            let copy = copy_training_rows(&request)?;
            let loaded = as_extension_owner(|| {
                let table =
                    PgRelation::open_with_name_and_share_lock(&copy.name).map_err(|_| {
                        AmbientError::undefined_table(format!("the copy {} is gone", copy.name))
                    })?;
                let features: Vec<String> = copy.columns[..copy.columns.len() - 1].to_vec();
                source::load(&source::Request {
                    source: &Source::Relation(table),
                    features: Some(&features),
                    ..request
                })
            })?;
            Ok((loaded, Some(copy)))
        }
    };
    // A training set's lineage: its feature sets and the newest ingest
    // time it saw, read right after the rows, with the same rights.
    // The relations it read, so DDL on them is checked against the model
    // once it is live (the source guard, api/guard.rs).
    let read = || {
        let (loaded, copy) = req.source.read(load)?;
        let lineage = match &req.source {
            Source::TrainingSet { name, .. } => {
                let (set, sets) = super::features::training_set_for_train(name)?;
                Some(super::features::lineage(&set, &sets)?)
            }
            _ => None,
        };
        let relations = req.source.relations_read()?;
        Ok((loaded, lineage, relations, copy))
    };
    // A person's call reads as the caller; a stored definition reads as
    // its author.
    let (loaded, feature_lineage, source_relations, copy) = match &req.author {
        Some(author) => as_author(author, read)?,
        None => read()?,
    };
    if loaded.unlabeled > 0 {
        notice!(
            "skipped {} row(s) whose \"{}\" is NULL (unlabeled)",
            loaded.unlabeled,
            target
        );
    }
    let data = &loaded.dataset;
    let plan = plan(&req, data.task(), data.n_rows())?;
    let threads = gucs::training_threads();
    let columns: Vec<(String, ColumnKind)> = data
        .feature_names
        .iter()
        .cloned()
        .zip(data.kinds.iter().copied())
        .collect();
    // The user's options, over each input style's defaults; checked for
    // the styles the plan fits, here, before anything is fitted.
    let options_of =
        |style: InputStyle| preprocess::parse_options(&req.preprocess, &columns, style);
    let mut options: Vec<(InputStyle, Vec<ColumnOptions>)> = Vec::new();
    for spec in plan.algorithms() {
        if !options.iter().any(|(style, _)| *style == spec.inputs) {
            options.push((spec.inputs, options_of(spec.inputs)?));
        }
    }
    let options_for = |spec: &'static AlgorithmSpec| {
        options
            .iter()
            .find(|(style, _)| *style == spec.inputs)
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    };
    // What the fits may still take as they grow (tree nodes), once the
    // parts known from the data's shape are counted.
    let headroom = check_memory(data, &plan, &options_for, threads, req.folds, budget)?;
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
        projects::authorize_train(&project, &caller)?;
        check_fits(&project, Some(&target), Some(data.task()))?;
        Ok(project)
    })?;
    let interrupts = source::check_interrupts();
    // The project's input contract keys the split, so a row keeps its side
    // when a later model uses more columns.
    let split = split::holdout(data, req.test_size, req.seed as u64, &project.features)?;
    // What is kept of the rows, and the live model's score on the test
    // rows as read, before the fit takes the rows (`model::train`).
    let column_stats = serde_json::to_value(stats::describe(
        data,
        &target,
        loaded.unlabeled,
        &interrupts,
    )?)
    .unwrap_or(serde_json::Value::Null);
    interrupts.check()?;
    let data_sha256 = data.sha256_hex(&interrupts)?;
    let live = as_extension_owner(|| deployments::live(project.id))?;
    // Some (its version, its metrics) when the new model has a live one to beat.
    let champion = match (req.deploy, &live) {
        (DeployPolicy::IfBetter, Some(live)) => {
            let champion = model_cache::load_latest(live.model_id)?;
            // It encodes the test rows, and keeps a position, a prediction
            // and class probabilities for each, while the rows are held
            // (the fit comes after): bounded like the fit, or not compared.
            let rows = data.records.capacity() as u64 * 8;
            let classes = champion.labels.as_ref().map_or(0, |l| l.classes.len());
            let per_test_row = champion.feature_names.len() + 2 + classes;
            let scoring = (split.test.len() * per_test_row) as u64 * 8;
            let scored = if rows + scoring > budget {
                Err(MlError::out_of_memory(format!(
                    "its {} encoded test rows would take ambient.max_training_memory past its limit",
                    split.test.len()
                )))
            } else {
                champion.evaluate(data, &split.test, threads, &interrupts)
            };
            Some((live.model_version, scored))
        }
        _ => None,
    };
    let task = data.task();
    let features = data.feature_names.clone();
    let label_classes = data.encoding().map(|e| e.classes.clone());
    let row_count = data.n_rows();
    let started = Instant::now();
    let (spec, params, trials) = match plan {
        Plan::One(spec, params) => (spec, params, Vec::new()),
        Plan::Search(candidates) => {
            let training_rows = split.train.len();
            let total = search::planned_trials(training_rows, candidates.len());
            let budget = req
                .budget_seconds
                .unwrap_or_else(|| search::default_budget_seconds(training_rows));
            let trials = search::run(
                &CrossValidation {
                    data,
                    rows: &split.train,
                    folds: req.folds,
                    preprocess: &options_for,
                    seed: req.seed as u64,
                    threads,
                    budget_seconds: Some(budget),
                    memory_per_fold: headroom / threads.clamp(1, req.folds) as u64,
                },
                candidates,
                &interrupts,
                &mut |trial| report(trial, total, training_rows, &req.search_params, task),
            )?;
            report_cuts(&trials, training_rows, budget, req.budget_seconds.is_none());
            let best = search::winner(&trials).ok_or_else(|| {
                AmbientError::invalid("no trial of the search finished").hint(
                    trials
                        .first()
                        .map(|t| t.status.describe())
                        .unwrap_or_default(),
                )
            })?;
            let (spec, params) = (best.candidate.algorithm, best.candidate.params.clone());
            (spec, params, trials)
        }
    };
    let chosen = search::winner(&trials).map(|w| w.number);
    let Loaded {
        dataset,
        feature_types,
        unlabeled,
    } = loaded;
    let trained = model::train(
        dataset,
        &FitRequest {
            algorithm: spec,
            params: &params,
            split: &split,
            seed: req.seed as u64,
            threads,
            preprocess: &options_for(spec),
            memory: &MemoryBudget::new(headroom),
        },
        &interrupts,
    )?;
    let training_seconds = started.elapsed().as_secs_f64();
    let Trained {
        model,
        metrics,
        permutation,
        diagnostics,
    } = trained;
    let primary = task.primary_metric();
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
    let caller_name = caller.name();
    // The definition will run again (a policy's retrain) as the project's
    // owning role, whoever of its owners, or a superuser, trained it: never
    // with the rights of a member or superuser, which an owner could
    // otherwise borrow by changing what the definition reads (a view of
    // theirs it names) and running the policy.
    let author = match &req.author {
        Some(author) => author.clone(),
        None => Author {
            role: project.owner,
            search_path: Author::search_path_now()?,
        },
    };

    let source_relations = source::guarded_by(&source_relations, project.owner)?;
    as_extension_owner(|| {
        let snapshot_id = models::insert_snapshot(NewSnapshot {
            project_id: project.id,
            source_kind: req.source.kind(),
            source: &req.source.describe(),
            row_count: row_count as i64,
            unlabeled_rows: unlabeled as i64,
            column_stats,
            data_sha256: &data_sha256,
            created_by: &caller_name,
            source_relations: &source_relations,
            copy: copy.as_ref().map(|c| (c.snapshot_id, c.name.as_str())),
        })?;
        if let Some(copy) = &copy {
            models::share_copy(&copy.name, project.id)?;
        }
        let (model_id, version) = models::insert(NewModel {
            project_id: project.id,
            algorithm: spec.name,
            hyperparams: params.to_json(),
            features: features.clone(),
            feature_types: feature_types.clone(),
            preprocessing: model.inputs.describe(),
            importance,
            request: req.describe(spec.name),
            label_classes,
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
            artifact_sha256: sha.clone(),
            created_by: &caller_name,
            parent_model_id: req.parent_model_id,
            author: &author,
            feature_lineage,
            diagnostics: serde_json::to_value(&diagnostics).unwrap_or_default(),
        })?;
        audit::record(
            Entry::project(
                "train",
                &caller_name,
                &project.name,
                project.id,
                project.owner,
            )
            .model(model_id)
            .reason(
                req.parent_model_id
                    .map(|_| "retrained by the project's policy"),
            )
            .details(serde_json::json!({
                "version": version,
                "algorithm": spec.name,
                primary: score,
                "parent_model_id": req.parent_model_id,
                "source": req.source.describe(),
                "rows": row_count,
                "data_sha256": data_sha256,
                "artifact_sha256": sha,
            })),
        )?;
        models::insert_trials(
            model_id,
            trials
                .iter()
                .map(|t| NewTrial {
                    trial: t.number as i32,
                    algorithm: t.candidate.algorithm.name.to_string(),
                    hyperparams: t.candidate.params.to_json(),
                    fold_scores: t.fold_scores.clone(),
                    mean_score: Some(t.mean).filter(|m| m.is_finite()),
                    std_score: Some(t.std).filter(|s| s.is_finite()),
                    seconds: t.seconds,
                    status: t.status.describe(),
                    chosen: Some(t.number) == chosen,
                    sample_rows: t.rows as i64,
                })
                .collect(),
        )?;

        let contract_refusal = check_contract(&project, &features, req.new_contract).err();
        let deploy = match (req.deploy, &champion) {
            (DeployPolicy::Never, _) => false,
            _ if contract_refusal.is_some() => {
                notice!(
                    "not deploying: {}; train with new_contract => true to deploy it",
                    contract_refusal.as_ref().map_or("", AmbientError::message)
                );
                false
            }
            // Always, or if_better with no live model to beat.
            (_, None) => true,
            (_, Some((live_version, Ok(champion_metrics)))) => {
                let champion_score = champion_metrics.get(primary).copied().unwrap_or(f64::NAN);
                notice!(
                    "{primary} on the same {} test rows: new model {score:.4}, live model (version {live_version}) {champion_score:.4}",
                    split.test.len(),
                );
                is_better(score, champion_score)
            }
            (_, Some((live_version, Err(e)))) => {
                notice!(
                    "live model (version {live_version}) cannot be scored on this data ({}); not deploying",
                    e.message
                );
                false
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

impl TrainRequest {
    /// What was asked, as the model row keeps it, so the same training can
    /// run again on new data. An algorithm left to the default is recorded
    /// as the one fitted (`fitted`), so a retrain fits the same learner
    /// after a release changes the default.
    fn describe(&self, fitted: &str) -> serde_json::Value {
        let strategy = match &self.strategy {
            None => None,
            Some(Strategy::Auto) => Some("auto"),
            Some(Strategy::Grid) => Some("grid"),
            Some(Strategy::Random { .. }) => Some("random"),
        };
        let iterations = match &self.strategy {
            Some(Strategy::Random { iterations }) => Some(*iterations),
            _ => None,
        };
        serde_json::json!({
            "algorithm": match (strategy, self.algorithm.as_deref()) {
                (Some("auto"), _) => "auto",
                (_, Some(named)) => named,
                (_, None) => fitted,
            },
            "hyperparams": self.hyperparams,
            "features": self.features,
            "preprocess": self.preprocess,
            "search": strategy.filter(|s| *s != "auto"),
            "search_params": self.search_params,
            "search_iterations": iterations,
            "folds": strategy.map(|_| self.folds),
            "budget_seconds": self.budget_seconds,
            "test_size": self.test_size,
            "seed": self.seed,
            "snapshot": self.snapshot.as_str(),
        })
    }
}

/// What a train call fits: one algorithm, or the candidates of a search.
enum Plan {
    One(&'static AlgorithmSpec, Hyperparams),
    Search(Vec<Candidate>),
}

impl Plan {
    /// Every algorithm the plan may fit.
    fn algorithms(&self) -> Vec<&'static AlgorithmSpec> {
        match self {
            Plan::One(spec, _) => vec![spec],
            Plan::Search(candidates) => candidates.iter().map(|c| c.algorithm).collect(),
        }
    }
}

/// The plan for `task` on `rows` rows (0 before the data is read): the
/// algorithm asked for (or the task's default) with its validated
/// hyper-parameters, or every candidate of the search, validated.
fn plan(req: &TrainRequest, task: Task, rows: usize) -> AmbientResult<Plan> {
    let spec = match &req.algorithm {
        Some(name) => Some(algorithms::lookup(name)?),
        None if req.strategy == Some(Strategy::Auto) => None,
        None => Some(algorithms::lookup(algorithms::default_for(task))?),
    };
    Ok(match (&req.strategy, spec) {
        (None, Some(spec)) => Plan::One(
            spec,
            Hyperparams::validate(spec.name, spec.params(task)?, &req.hyperparams)?,
        ),
        (strategy, spec) => Plan::Search(search::candidates(
            strategy.as_ref().unwrap_or(&Strategy::Auto),
            spec,
            task,
            &req.hyperparams,
            &req.search_params,
            rows,
            req.seed as u64,
        )?),
    })
}

/// Refuses a plan whose fits would hold more than `budget` at once: the
/// raw data, plus per fit running at the same time the encoded copy (none
/// for the last fit when each input is one feature: it encodes the rows
/// where they lie) and what the algorithm needs whatever the data. A search fits `folds` folds
/// on about (folds − 1)/folds of its largest rung's rows (every row, or a
/// subsample copied out when successive halving screens), as many at a time
/// as there are threads, then refits the winner on all of them. Returns
/// what is left, for what the fits grow (tree nodes).
fn check_memory(
    data: &Dataset,
    plan: &Plan,
    options_for: &dyn Fn(&'static AlgorithmSpec) -> Vec<ColumnOptions>,
    threads: usize,
    folds: usize,
    budget: u64,
) -> AmbientResult<u64> {
    let classes = data.encoding().map_or(0, |e| e.classes.len());
    // `encoded`: the rows preprocessing encodes for the fit into a copy of
    // their own.
    let fit = |spec: &'static AlgorithmSpec,
               params: &Hyperparams,
               rows: usize,
               encoded: usize,
               threads: usize| {
        let width = preprocess::max_width(data, &options_for(spec));
        let shape = Shape {
            rows,
            features: width,
            classes,
            threads,
        };
        (encoded * width) as u64 * 8 + (spec.estimated_bytes)(&shape, params)
    };
    let all = data.n_rows();
    // The last fit takes the rows, and encodes them where they lie when
    // each input becomes one feature (`Preprocessor::transform_into`).
    let last_fit = |spec: &'static AlgorithmSpec, params: &Hyperparams| {
        let in_place = preprocess::max_width(data, &options_for(spec)) == data.width();
        fit(spec, params, all, if in_place { 0 } else { all }, threads)
    };
    let (name, most) = match plan {
        Plan::One(spec, params) => (spec.name, last_fit(spec, params)),
        Plan::Search(candidates) => {
            let at_once = threads.clamp(1, folds);
            // The search screens the training split, which is not drawn yet:
            // its last rung is at most the last rung for every row, or every
            // training row when there are too few to screen.
            let rung = search::rungs(all, candidates.len())
                .last()
                .copied()
                .unwrap_or(all)
                .max(all.min(search::HALVING_FIRST_ROWS * search::HALVING_FACTOR));
            // A subsample is a copy of the raw rows.
            let copy = if rung < all {
                (rung * data.width()) as u64 * 8
            } else {
                0
            };
            let fold_rows = rung * (folds - 1) / folds;
            let need = |c: &Candidate| {
                let per_fold = fit(
                    c.algorithm,
                    &c.params,
                    fold_rows,
                    rung,
                    (threads / folds).max(1),
                );
                (copy + at_once as u64 * per_fold).max(last_fit(c.algorithm, &c.params))
            };
            let worst = candidates.iter().max_by_key(|c| need(c));
            (
                worst.map_or("a search", |c| c.algorithm.name),
                worst.map_or(0, need),
            )
        }
    };
    let needed = data.records.len() as u64 * 8 + most;
    if needed > budget {
        return Err(source::too_much_memory(
            &format!("training {name} on {} rows", data.n_rows()),
            needed,
            budget,
        ));
    }
    Ok(budget - needed)
}

/// A NOTICE per trial, unless `ambient.progress` is off.
fn report(trial: &Trial, total: usize, rows: usize, space: &serde_json::Value, task: Task) {
    if !gucs::progress() {
        return;
    }
    let sample = if trial.rows < rows {
        format!(" on {} of {rows} rows", trial.rows)
    } else {
        String::new()
    };
    // The searched hyper-parameters' values, or none for `auto`.
    let params = trial.candidate.params.to_json();
    let searched: Vec<String> = space
        .as_object()
        .map(|keys| {
            keys.keys()
                .filter_map(|k| params.get(k).map(|v| format!("{k}={v}")))
                .collect()
        })
        .unwrap_or_default();
    let what = if searched.is_empty() {
        trial.candidate.algorithm.name.to_string()
    } else {
        format!("{} {}", trial.candidate.algorithm.name, searched.join(", "))
    };
    match trial.status {
        Status::Done => notice!(
            "trial {}/{total}: {what}: {} {:.4} ± {:.4} over {} folds{sample} ({:.1} s)",
            trial.number,
            task.primary_metric(),
            trial.mean,
            trial.std,
            trial.fold_scores.len(),
            trial.seconds
        ),
        _ => notice!(
            "trial {}/{total}: {what}: {}",
            trial.number,
            trial.status.describe()
        ),
    }
}

/// A NOTICE for what a search left out: the candidates successive halving
/// screened out on subsamples, and the trials the time budget skipped.
/// Said whatever `ambient.progress` is, as a cut changes the result.
fn report_cuts(trials: &[Trial], rows: usize, budget: f64, default_budget: bool) {
    let mut sizes: Vec<usize> = trials.iter().map(|t| t.rows).collect();
    sizes.dedup();
    if sizes.first().is_some_and(|&first| first < rows) {
        let screened: Vec<String> = sizes
            .iter()
            .map(|&size| {
                let on = trials.iter().filter(|t| t.rows == size).count();
                format!("{on} on {size} rows")
            })
            .collect();
        notice!(
            "successive halving screened the candidates on subsamples ({}); the winner is fitted on all {rows} training rows",
            screened.join(", ")
        );
    }
    let skipped = trials
        .iter()
        .filter(|t| t.status == Status::Skipped)
        .count();
    if skipped > 0 {
        notice!(
            "{skipped} trial(s) skipped: the search's time budget of {budget} s{} was spent",
            if default_budget {
                format!(" (the default for {rows} rows; budget_seconds => ... gives more)")
            } else {
                String::new()
            }
        );
    }
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

/// Each of `models` scored on the test rows of `definition` (a model's
/// training definition, read again as its author): the rows that model
/// was tested on, if its source has not changed since. Returns their
/// metrics and the number of test rows. Callers check the caller's rights
/// to every model first.
pub(super) fn score_on_test_rows_of(
    project: &projects::Project,
    definition: &models::Definition,
    models: &[i64],
) -> AmbientResult<(Vec<crate::ml::metrics::Metrics>, usize)> {
    let mut request = TrainRequest::again(project, definition, DeployPolicy::Never)?;
    let loaded: Vec<Rc<Model>> = models
        .iter()
        .map(|&id| model_cache::load_latest(id))
        .collect::<AmbientResult<_>>()?;
    // Every input any of the models takes, so each finds its own.
    let mut features = request.features.take().unwrap_or_default();
    for model in &loaded {
        for name in model.inputs.names() {
            if !features.iter().any(|f| f == name) {
                features.push(name.to_string());
            }
        }
    }
    let budget = gucs::max_training_memory_bytes();
    // Read as the definition's author, with its rights only, never the
    // caller's: whoever asks for a diff lends the stored query nothing.
    let read = || {
        source::load(&source::Request {
            source: &request.source,
            target: &project.target,
            task: Some(project.task),
            features: Some(&features),
            limits: source::Limits {
                max_rows: gucs::max_training_rows(),
                max_bytes: budget,
                max_classes: gucs::max_classes(),
            },
        })
    };
    let loaded_rows = as_author(&definition.author, || request.source.read(read))?;
    let data = &loaded_rows.dataset;
    let split = split::holdout(
        data,
        request.test_size,
        request.seed as u64,
        &project.features,
    )?;
    let interrupts = source::check_interrupts();
    let threads = gucs::training_threads();
    let metrics = loaded
        .iter()
        .map(|model| Ok(model.evaluate(data, &split.test, threads, &interrupts)?))
        .collect::<AmbientResult<Vec<_>>>()?;
    Ok((metrics, split.test.len()))
}

/// A copy of the rows a train reads, made by the reader.
struct TrainingCopy {
    /// The snapshot it belongs to, whose id it was made under.
    snapshot_id: i64,
    /// Schema-qualified and quoted.
    name: String,
    /// The features, then the target.
    columns: Vec<String>,
}

/// Copies the rows `request` reads (its features and target, at most one
/// more row than a train may read, so the limit is still refused) into a
/// new catalog-owned table, as the current role: the reader, with its
/// rights. Refused (53400) when the copies would take more than
/// `ambient.snapshot_copy_quota`.
fn copy_training_rows(request: &source::Request<'_>) -> AmbientResult<TrainingCopy> {
    let columns = source::columns_to_read(request)?;
    let reader = Caller::current();
    let (snapshot_id, name) = as_extension_owner(|| models::create_copy(&columns, reader.oid))?;
    let list = columns
        .iter()
        .map(|(c, _)| pgrx::spi::quote_identifier(c))
        .collect::<Vec<_>>()
        .join(", ");
    Spi::run(&format!(
        "INSERT INTO {name} ({list}) SELECT {list} FROM {} LIMIT {}",
        request.source.sql_from(),
        request.limits.max_rows.saturating_add(1)
    ))?;
    let taken = as_extension_owner(|| models::close_copy(&name, reader.oid))?;
    let quota = gucs::snapshot_copy_quota_bytes();
    if taken > quota {
        let kb = |bytes: u64| bytes.div_ceil(1024);
        return Err(AmbientError::limit(format!(
            "training-data copies would take {} kB, more than ambient.snapshot_copy_quota ({} kB)",
            kb(taken),
            kb(quota)
        ))
        .hint("drop models whose copies are no longer needed, train with snapshot => 'hash', or ask a superuser to raise the quota"));
    }
    Ok(TrainingCopy {
        snapshot_id,
        name,
        columns: columns.into_iter().map(|(c, _)| c).collect(),
    })
}

/// What `ambient.reproduce` found.
pub(super) struct Reproduction {
    pub identical: bool,
    pub original_sha256: String,
    pub reproduced_sha256: String,
    pub data_identical: bool,
    /// 'copy' or 'source'.
    pub read_from: &'static str,
    pub reason: String,
}

/// Trains `model_id` again as its author, the way it was trained, from the
/// copy of its rows if it kept one (and it is still there), else from its
/// source as it is now, in a subtransaction that is always rolled back:
/// nothing is kept but the comparison of the new artifact's sha256 (and
/// the data's) with the model's. A difference is a result, with its cause.
pub(super) fn reproduce(model_id: i64, caller: &Caller) -> AmbientResult<Reproduction> {
    catalog::ensure_writable()?;
    let (record, definition) = as_extension_owner(|| {
        let record = models::record(model_id)?.ok_or_else(|| models::unknown(model_id))?;
        Ok((record, models::definition(model_id)?))
    })?;
    let project = projects::require(record["project"].as_str().unwrap_or_default())?;
    if !caller.acts_as(project.owner) {
        return Err(
            AmbientError::privilege(format!("permission denied for model {model_id}"))
                .hint("only roles with the privileges of its project's owner may train it again"),
        );
    }
    let mut definition = definition.ok_or_else(|| {
        AmbientError::not_in_state(format!(
            "model {model_id} keeps no training definition to run again"
        ))
        .hint("models trained before 0.2.0 kept none")
    })?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let copy = record["snapshot"]["copy"]
        .as_str()
        .map(str::to_string)
        .filter(|name| PgRelation::open_with_name_and_share_lock(name).is_ok());
    let read_from = match &copy {
        Some(name) => {
            definition.source_kind = "relation".to_string();
            definition.source = name.clone();
            "copy"
        }
        None => "source",
    };
    // The request opens its source: inside the subtransaction, whose
    // resource owner then closes it.
    let reproduced = rolled_back(|| {
        let mut request = TrainRequest::again(&project, &definition, DeployPolicy::Never)?;
        // Exactly its features, and no second copy.
        request.features = Some(
            record["features"]
                .as_array()
                .map(|list| list.iter().map(text).collect())
                .unwrap_or_default(),
        );
        request.snapshot = SnapshotMode::Hash;
        let outcome = run(request)?;
        let again = as_extension_owner(|| models::record(outcome.model_id))?
            .ok_or_else(|| models::unknown(outcome.model_id))?;
        Ok((
            text(&again["artifact_sha256"]),
            text(&again["snapshot"]["data_sha256"]),
        ))
    });
    let (reproduced_sha256, data_sha256) = match reproduced {
        Ok(found) => found,
        Err(Failure::Ambient(e)) => return Err(e),
        Err(Failure::Postgres(caught)) => match *caught {
            pg_sys::panic::CaughtError::PostgresError(report)
            | pg_sys::panic::CaughtError::ErrorReport(report) => {
                pg_sys::panic::CaughtError::PostgresError(report).rethrow()
            }
            other @ pg_sys::panic::CaughtError::RustPanic { .. } => other.rethrow(),
        },
    };
    let original_sha256 = text(&record["artifact_sha256"]);
    let original_data = text(&record["snapshot"]["data_sha256"]);
    let identical = reproduced_sha256 == original_sha256;
    let data_identical = data_sha256 == original_data;
    let trained_by = text(&record["extension_version"]);
    let reason = if identical && data_identical {
        "the same artifact, byte for byte".to_string()
    } else if identical {
        format!(
            "the same artifact, byte for byte, though the {read_from} now hashes to {data_sha256}"
        )
    } else if !data_identical {
        format!(
            "the data changed: the {read_from} now hashes to {data_sha256}, and the model was trained on rows hashing to {original_data}{}",
            if copy.is_none() { " (it kept no copy: train with snapshot => 'copy' to keep one)" } else { "" }
        )
    } else if trained_by != env!("CARGO_PKG_VERSION") {
        format!(
            "the code changed: the model was trained by pg_ambient {trained_by}, this is {}",
            env!("CARGO_PKG_VERSION")
        )
    } else {
        "the same data and code gave other bytes: the project's input contract, which keys the test split, may have changed since".to_string()
    };
    Ok(Reproduction {
        identical,
        original_sha256,
        reproduced_sha256,
        data_identical,
        read_from,
        reason,
    })
}
