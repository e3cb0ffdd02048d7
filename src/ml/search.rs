//! Model selection: which algorithm and hyper-parameters to train, chosen
//! by k-fold cross-validation on the training split. Every candidate is a
//! trial with its per-fold scores; the best mean wins and is then refit on
//! the whole training split by `model::train` (PostgresML skips the refit).
//!
//! - `auto`: a portfolio of algorithms with their defaults, suited to the
//!   task and the data size;
//! - `grid`: every combination of the listed values of one algorithm;
//! - `random`: `iterations` points drawn from lists and ranges (`uniform`,
//!   `log_uniform`, `int_uniform`), from the seed.
//!
//! Above `HALVING_FIRST_ROWS` × `HALVING_FACTOR` training rows, candidates
//! are screened by successive halving (scikit-learn's `HalvingGridSearchCV`,
//! with its factor 3): every candidate is cross-validated on a subsample of
//! 10,000 rows, the best third goes on to a subsample three times larger,
//! and so on until one is left; only that one is fitted on all the rows.
//! Every trial, screened out or not, is kept with its subsample's size.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value as Json};

use super::algorithms::{self, unit_seed, AlgorithmSpec, TrainingData};
use super::dataset::{Dataset, Labels};
use super::hyperparams::{Hyperparams, ParamKind};
use super::model::Model;
use super::preprocess::{ColumnOptions, Preprocessor};
use super::{parallel, Interrupts, MemoryBudget, MlError, MlResult, Task};

/// Rows above which `auto` leaves out algorithms whose fit grows fastest
/// (a forest of full-depth trees, one deep tree).
const AUTO_LARGE: usize = 200_000;

/// The first rung of successive halving: its subsample's rows.
pub const HALVING_FIRST_ROWS: usize = 10_000;
/// Each rung keeps a third of its candidates, on three times the rows.
pub const HALVING_FACTOR: usize = 3;

/// Rows up to which `auto` also tries `svm`, whose fit grows about as
/// rows^1.7 (scikit-learn's guide puts SVC's practical limit at a few tens
/// of thousands).
const AUTO_KERNEL: usize = 5_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Auto,
    Grid,
    Random { iterations: usize },
}

/// One point to try.
#[derive(Clone)]
pub struct Candidate {
    pub algorithm: &'static AlgorithmSpec,
    pub params: Hyperparams,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Done,
    /// The fit failed on some fold (e.g. a solver that did not converge).
    Failed(String),
    /// The budget ran out before it started.
    Skipped,
}

impl Status {
    pub fn describe(&self) -> String {
        match self {
            Status::Done => "done".into(),
            Status::Failed(why) => format!("failed: {why}"),
            Status::Skipped => "skipped: budget spent".into(),
        }
    }
}

#[derive(Clone)]
pub struct Trial {
    /// 1, 2, ... in the order tried.
    pub number: usize,
    /// The training rows it was cross-validated on: a subsample while
    /// candidates are screened, else all of them.
    pub rows: usize,
    pub candidate: Candidate,
    pub fold_scores: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub seconds: f64,
    pub status: Status,
}

/// The candidates a strategy tries. `base` is the user's `hyperparams`,
/// which every point starts from; `space` the `search_params`.
pub fn candidates(
    strategy: &Strategy,
    algorithm: Option<&'static AlgorithmSpec>,
    task: Task,
    base: &Json,
    space: &Json,
    rows: usize,
    seed: u64,
) -> MlResult<Vec<Candidate>> {
    let validate = |spec: &'static AlgorithmSpec, point: &Json| -> MlResult<Candidate> {
        Ok(Candidate {
            algorithm: spec,
            params: Hyperparams::validate(spec.name, spec.params(task)?, point)?,
        })
    };
    match strategy {
        Strategy::Auto => {
            let mut names: Vec<(&str, Json)> = vec![("hist_gbm", Json::Null)];
            if rows <= AUTO_LARGE {
                names.push(("gbm", Json::Null));
                names.push(("random_forest", Json::Null));
                names.push(("decision_tree", serde_json::json!({"max_depth": 8})));
            }
            if rows <= AUTO_KERNEL {
                names.push(("svm", Json::Null));
            }
            match task {
                Task::Classification => {
                    names.push(("logistic_regression", Json::Null));
                    names.push(("gaussian_nb", Json::Null));
                }
                Task::Regression => {
                    names.push(("ridge", Json::Null));
                    names.push(("linear_regression", Json::Null));
                }
            }
            names
                .into_iter()
                .map(|(name, point)| validate(algorithms::lookup(name)?, &point))
                .collect()
        }
        Strategy::Grid | Strategy::Random { .. } => {
            let spec = algorithm.ok_or_else(|| {
                MlError::invalid("a search needs one algorithm").with_hint(
                    "name it with algorithm => '...'; algorithm => 'auto' compares algorithms instead",
                )
            })?;
            let specs = spec.params(task)?;
            let space = match space {
                Json::Object(map) if !map.is_empty() => map,
                _ => {
                    return Err(MlError::invalid(
                        "search_params must be a JSON object of hyper-parameter to values",
                    )
                    .with_hint(r#"e.g. '{"max_depth": [4, 8, 16]}' or '{"alpha": {"log_uniform": [1e-4, 1]}}'"#))
                }
            };
            if let Some(unknown) = space
                .keys()
                .find(|k| !specs.iter().any(|s| s.name == k.as_str()))
            {
                return Err(MlError::invalid(format!(
                    "search_params names \"{unknown}\", which {} does not take",
                    spec.name
                ))
                .with_hint(format!(
                    "valid hyperparameters: {}",
                    specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                )));
            }
            let points = match strategy {
                Strategy::Grid => grid(space)?,
                _ => {
                    let iterations = match strategy {
                        Strategy::Random { iterations } => *iterations,
                        _ => 0,
                    };
                    let kinds: Vec<(String, ParamKind)> = space
                        .keys()
                        .filter_map(|k| {
                            specs
                                .iter()
                                .find(|s| s.name == k)
                                .map(|s| (k.clone(), s.kind))
                        })
                        .collect();
                    random(space, &kinds, iterations, seed)?
                }
            };
            points
                .into_iter()
                .map(|point| {
                    let mut merged = match base {
                        Json::Object(map) => map.clone(),
                        _ => Map::new(),
                    };
                    merged.extend(point);
                    validate(spec, &Json::Object(merged)).map_err(|e| {
                        MlError::invalid(format!(
                            "search_params has a point {} cannot take: {}",
                            spec.name, e.message
                        ))
                    })
                })
                .collect()
        }
    }
}

fn grid(space: &Map<String, Json>) -> MlResult<Vec<Map<String, Json>>> {
    let mut points = vec![Map::new()];
    for (key, values) in space {
        let values = values.as_array().ok_or_else(|| {
            MlError::invalid(format!("grid search takes lists: \"{key}\" is not one"))
                .with_hint("use search => 'random' for ranges")
        })?;
        if values.is_empty() {
            return Err(MlError::invalid(format!(
                "the search space has no valid point: \"{key}\" lists no values"
            )));
        }
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut next = p.clone();
                    next.insert(key.clone(), v.clone());
                    next
                })
            })
            .collect();
        if points.len() > 10_000 {
            return Err(MlError::invalid("the grid has more than 10000 points")
                .with_hint("use search => 'random' with search_iterations"));
        }
    }
    Ok(points)
}

fn random(
    space: &Map<String, Json>,
    kinds: &[(String, ParamKind)],
    iterations: usize,
    seed: u64,
) -> MlResult<Vec<Map<String, Json>>> {
    enum Draw<'a> {
        Choice(&'a [Json]),
        Uniform(f64, f64),
        LogUniform(f64, f64),
        IntUniform(i64, i64),
    }
    let mut draws = Vec::new();
    for (key, kind) in kinds {
        let spec = &space[key];
        let bad = |why: &str| {
            MlError::invalid(format!("search_params \"{key}\": {why}")).with_hint(
                r#"a list of values, or {"uniform": [low, high]}, {"log_uniform": [low, high]} or {"int_uniform": [low, high]}"#,
            )
        };
        let draw = match spec {
            Json::Array(values) if values.is_empty() => {
                return Err(MlError::invalid(format!(
                    "the search space has no valid point: \"{key}\" lists no values"
                )))
            }
            Json::Array(values) => Draw::Choice(values),
            Json::Object(range) if range.len() == 1 => {
                let (name, bounds) = range
                    .iter()
                    .next()
                    .map(|(n, b)| (n.as_str(), b))
                    .unwrap_or_default();
                let pair = bounds
                    .as_array()
                    .filter(|b| b.len() == 2)
                    .and_then(|b| Some((b[0].as_f64()?, b[1].as_f64()?)))
                    .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
                    .ok_or_else(|| bad("a range takes [low, high], low <= high"))?;
                match name {
                    "uniform" => Draw::Uniform(pair.0, pair.1),
                    "log_uniform" if pair.0 > 0.0 => Draw::LogUniform(pair.0.ln(), pair.1.ln()),
                    "log_uniform" => return Err(bad("log_uniform needs low > 0")),
                    "int_uniform" => Draw::IntUniform(pair.0.ceil() as i64, pair.1.floor() as i64),
                    other => return Err(bad(&format!("unknown range \"{other}\""))),
                }
            }
            _ => return Err(bad("not a list or a range")),
        };
        draws.push((key.clone(), *kind, draw));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
    Ok((0..iterations)
        .map(|_| {
            draws
                .iter()
                .map(|(key, kind, draw)| {
                    // An integer drawn from a continuous range is rounded.
                    let integer = matches!(kind, ParamKind::Integer { .. });
                    let number = |x: f64| {
                        if integer {
                            Json::from(x.round() as i64)
                        } else {
                            Json::from(x)
                        }
                    };
                    let value = match draw {
                        Draw::Choice(values) => values[rng.gen_range(0..values.len())].clone(),
                        Draw::Uniform(lo, hi) => number(lo + (hi - lo) * rng.gen::<f64>()),
                        Draw::LogUniform(lo, hi) => {
                            number((lo + (hi - lo) * rng.gen::<f64>()).exp())
                        }
                        Draw::IntUniform(lo, hi) if lo <= hi => {
                            Json::from(rng.gen_range(*lo..=*hi))
                        }
                        Draw::IntUniform(lo, _) => Json::from(*lo),
                    };
                    (key.clone(), value)
                })
                .collect()
        })
        .collect())
}

/// Assigns each of `rows` (training rows of `data`) to one of `folds`
/// folds: for classification, class by class, so every fold has each class
/// in proportion (stratified); in an order drawn from `seed`.
pub fn assign_folds(data: &Dataset, rows: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf01d);
    rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
    if let Labels::Classes { index, .. } = &data.labels {
        // A stable sort by class keeps the shuffled order within a class.
        order.sort_by_key(|&k| index[rows[k]]);
    }
    let mut fold_of = vec![0; rows.len()];
    for (position, &k) in order.iter().enumerate() {
        fold_of[k] = position % folds;
    }
    fold_of
}

/// What every trial shares.
pub struct CrossValidation<'a> {
    pub data: &'a Dataset,
    /// The training split's rows.
    pub rows: &'a [usize],
    pub folds: usize,
    pub preprocess: &'a dyn Fn(&'static AlgorithmSpec) -> Vec<ColumnOptions>,
    pub seed: u64,
    pub threads: usize,
    /// Seconds after which no new trial starts; the best so far wins.
    pub budget_seconds: Option<f64>,
    /// What each fold's fit may take as it grows (see `MemoryBudget`).
    pub memory_per_fold: u64,
}

/// The subsample sizes of successive halving for `rows` training rows and
/// `candidates` candidates, smallest first; the last is every row when
/// screening does not narrow the candidates down to one before it.
pub fn rungs(rows: usize, candidates: usize) -> Vec<usize> {
    if candidates <= 1 || rows <= HALVING_FIRST_ROWS * HALVING_FACTOR {
        return vec![rows];
    }
    let (mut sizes, mut size, mut left) = (Vec::new(), HALVING_FIRST_ROWS, candidates);
    loop {
        if size >= rows {
            sizes.push(rows);
            return sizes;
        }
        sizes.push(size);
        left = left.div_ceil(HALVING_FACTOR);
        if left <= 1 {
            return sizes;
        }
        size *= HALVING_FACTOR;
    }
}

/// How many trials successive halving plans for `candidates` candidates
/// on `rows` training rows (fewer when some fail).
pub fn planned_trials(rows: usize, candidates: usize) -> usize {
    let mut left = candidates;
    rungs(rows, candidates)
        .iter()
        .map(|_| {
            let now = left;
            left = left.div_ceil(HALVING_FACTOR);
            now
        })
        .sum()
}

/// The time a search may take when the caller does not say: a minute, and
/// a minute more per 300,000 training rows. Successive halving keeps
/// `auto` well inside it; it bounds a large grid.
pub fn default_budget_seconds(rows: usize) -> f64 {
    (60.0 + 60.0 * rows as f64 / 300_000.0).round()
}

/// A subsample of `size` of the training rows, drawn from the seed, in
/// training order.
fn subsample(rows: &[usize], size: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4a1f);
    let mut picked = rand::seq::index::sample(&mut rng, rows.len(), size).into_vec();
    picked.sort_unstable();
    picked.into_iter().map(|k| rows[k]).collect()
}

/// Runs the candidates, screening them by successive halving when the
/// rows allow (see `rungs`), and reports each trial as it ends. Returns
/// the trials; `winner` picks from the last rung.
pub fn run(
    cv: &CrossValidation<'_>,
    candidates: Vec<Candidate>,
    interrupts: &Interrupts<'_>,
    report: &mut dyn FnMut(&Trial),
) -> MlResult<Vec<Trial>> {
    super::model::check_classes(cv.data)?;
    if cv.folds < 2 || cv.folds > cv.rows.len() {
        return Err(MlError::invalid(format!(
            "folds must be from 2 to the training rows ({}), got {}",
            cv.rows.len(),
            cv.folds
        )));
    }
    let started = Instant::now();
    let mut trials: Vec<Trial> = Vec::with_capacity(candidates.len());
    let mut alive = candidates;
    for size in rungs(cv.rows.len(), alive.len()) {
        // A subsample is copied out, so each fold encodes only its rows.
        let sample = (size < cv.rows.len()).then(|| {
            let rows = subsample(cv.rows, size, cv.seed);
            cv.data.subset(&rows)
        });
        let all_rows: Vec<usize>;
        let (data, rows) = match &sample {
            Some(subset) => {
                all_rows = (0..subset.n_rows()).collect();
                (subset, &all_rows[..])
            }
            None => (cv.data, cv.rows),
        };
        let rung = CrossValidation { data, rows, ..*cv };
        let fold_of = assign_folds(data, rows, cv.folds, cv.seed);
        let first = trials.len();
        for candidate in std::mem::take(&mut alive) {
            interrupts.check()?;
            let spent = started.elapsed().as_secs_f64();
            let out_of_budget = cv.budget_seconds.is_some_and(|b| spent >= b) && !trials.is_empty();
            let trial_started = Instant::now();
            let (fold_scores, status) = if out_of_budget {
                (Vec::new(), Status::Skipped)
            } else {
                match cross_validate(&rung, &candidate, &fold_of, interrupts) {
                    Ok(scores) => (scores, Status::Done),
                    // Stopped from outside: the whole search stops.
                    Err(e) if e.message == parallel::STOPPED => return Err(e),
                    Err(e) => (Vec::new(), Status::Failed(e.message)),
                }
            };
            interrupts.check()?;
            let (mean, std) = mean_and_std(&fold_scores);
            let trial = Trial {
                number: trials.len() + 1,
                rows: size,
                candidate,
                fold_scores,
                mean,
                std,
                seconds: trial_started.elapsed().as_secs_f64(),
                status,
            };
            report(&trial);
            trials.push(trial);
        }
        // The best third (by mean, the earlier on ties) goes on; a rung
        // the budget cut short ends the screening.
        let rung_trials = &trials[first..];
        if rung_trials.iter().any(|t| t.status == Status::Skipped) {
            break;
        }
        let mut ranked: Vec<&Trial> = rung_trials.iter().filter(|t| t.mean.is_finite()).collect();
        ranked.sort_by(|a, b| b.mean.total_cmp(&a.mean).then(a.number.cmp(&b.number)));
        let keep = rung_trials.len().div_ceil(HALVING_FACTOR);
        alive = ranked
            .into_iter()
            .take(keep)
            .map(|t| t.candidate.clone())
            .collect();
        if alive.is_empty() {
            break;
        }
    }
    Ok(trials)
}

fn mean_and_std(scores: &[f64]) -> (f64, f64) {
    if scores.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The trial with the highest mean score (the first on ties) among those
/// on the most rows: the last rung's, if any of it scored.
pub fn winner(trials: &[Trial]) -> Option<&Trial> {
    let scored = || trials.iter().filter(|t| t.mean.is_finite());
    let most_rows = scored().map(|t| t.rows).max()?;
    scored()
        .filter(|t| t.rows == most_rows)
        .fold(None, |best: Option<&Trial>, t| match best {
            Some(b) if b.mean >= t.mean => Some(b),
            _ => Some(t),
        })
}

/// The candidate's primary-metric score on each fold, the folds fitted in
/// parallel (each fit single-threaded when there are fewer threads than
/// folds' worth).
fn cross_validate(
    cv: &CrossValidation<'_>,
    candidate: &Candidate,
    fold_of: &[usize],
    interrupts: &Interrupts<'_>,
) -> MlResult<Vec<f64>> {
    let options = (cv.preprocess)(candidate.algorithm);
    let inner_threads = (cv.threads / cv.folds).max(1);
    let (data, rows, seed, memory) = (cv.data, cv.rows, cv.seed, cv.memory_per_fold);
    let metric = data.task().primary_metric();
    parallel::run(cv.folds, cv.threads, interrupts, |fold, interrupts| {
        let mut train = Vec::with_capacity(rows.len());
        let mut valid = Vec::with_capacity(rows.len());
        for (&row, &f) in rows.iter().zip(fold_of) {
            if f == fold {
                valid.push(row);
            } else {
                train.push(row);
            }
        }
        let inputs = Preprocessor::fit(data, &train, &options, interrupts)?;
        let encoded = inputs.transform(data, interrupts)?;
        let estimator = (candidate.algorithm.fit)(&TrainingData {
            dataset: &encoded,
            rows: &train,
            params: &candidate.params,
            seed: unit_seed(seed, fold),
            threads: inner_threads,
            memory: &MemoryBudget::new(memory),
            interrupts,
        })?;
        let model = Model::new(
            candidate.algorithm.name,
            data.task(),
            inputs,
            data.encoding().cloned(),
            estimator,
        );
        let metrics = model.score(&encoded, &valid, inner_threads, interrupts)?;
        metrics
            .get(metric)
            .copied()
            .ok_or_else(|| MlError::invalid(format!("no {metric} on a fold")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{LabelKind, RawLabels};
    use serde_json::json;

    fn data() -> Dataset {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..300 {
            let (a, b) = ((i % 20) as f64, ((i * 7) % 11) as f64);
            records.extend([a, b]);
            labels.push(if a + b > 15.0 { "yes" } else { "no" }.to_string());
        }
        Dataset::new(
            vec!["a".into(), "b".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap()
    }

    fn tree() -> Option<&'static AlgorithmSpec> {
        algorithms::lookup("decision_tree").ok()
    }

    #[test]
    fn a_grid_is_every_combination_over_the_base_params() {
        let c = candidates(
            &Strategy::Grid,
            tree(),
            Task::Classification,
            &json!({"criterion": "entropy"}),
            &json!({"max_depth": [2, 4, 8], "min_samples_leaf": [1, 5]}),
            300,
            1,
        )
        .unwrap();
        assert_eq!(c.len(), 6);
        assert!(c
            .iter()
            .all(|c| c.params.text("criterion") == Some("entropy")));
    }

    #[test]
    fn random_points_come_from_the_seed_and_stay_in_range() {
        let space = json!({"max_depth": {"int_uniform": [2, 9]}, "min_impurity_decrease": {"log_uniform": [1e-4, 1e-2]}});
        let draw = |seed| {
            candidates(
                &Strategy::Random { iterations: 8 },
                tree(),
                Task::Classification,
                &Json::Null,
                &space,
                300,
                seed,
            )
            .unwrap()
            .iter()
            .map(|c| c.params.to_json())
            .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        for p in draw(3) {
            let depth = p["max_depth"].as_i64().unwrap();
            let decrease = p["min_impurity_decrease"].as_f64().unwrap();
            assert!(
                (2..=9).contains(&depth) && (1e-4..=1e-2).contains(&decrease),
                "{p}"
            );
        }
    }

    #[test]
    fn bad_spaces_are_refused() {
        for (strategy, space, wanted) in [
            (Strategy::Grid, json!({"max_depth": []}), "no valid point"),
            (
                Strategy::Grid,
                json!({"max_depth": {"uniform": [1, 3]}}),
                "grid search takes lists",
            ),
            (Strategy::Grid, json!({"depth": [1]}), "does not take"),
            (Strategy::Grid, json!({"max_depth": [0]}), "cannot take"),
            (
                Strategy::Random { iterations: 3 },
                json!({"max_depth": {"log_uniform": [0, 3]}}),
                "low > 0",
            ),
            (
                Strategy::Random { iterations: 3 },
                json!({"max_depth": {"normal": [1, 3]}}),
                "unknown range",
            ),
            (Strategy::Grid, json!({}), "must be a JSON object"),
        ] {
            let err = candidates(
                &strategy,
                tree(),
                Task::Classification,
                &Json::Null,
                &space,
                300,
                1,
            )
            .err()
            .unwrap_or_else(|| panic!("{space} was accepted"));
            assert!(err.message.contains(wanted), "{space}: {}", err.message);
        }
    }

    #[test]
    fn folds_are_stratified() {
        let d = data();
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let fold_of = assign_folds(&d, &rows, 3, 7);
        for fold in 0..3 {
            let yes = rows
                .iter()
                .filter(|&&i| fold_of[i] == fold && d.label_value(i) == 1.0)
                .count();
            let all = fold_of.iter().filter(|&&f| f == fold).count();
            let share = yes as f64 / all as f64;
            let overall =
                (0..d.n_rows()).filter(|&i| d.label_value(i) == 1.0).count() as f64 / 300.0;
            assert!(
                (share - overall).abs() < 0.02,
                "fold {fold}: {share} vs {overall}"
            );
        }
    }

    #[test]
    fn auto_cross_validates_a_portfolio_and_a_spent_budget_skips_the_rest() {
        let d = data();
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let defaults =
            |spec: &'static AlgorithmSpec| crate::ml::preprocess::default_options(&d, spec.inputs);
        let cv = |budget| CrossValidation {
            data: &d,
            rows: &rows,
            folds: 3,
            preprocess: &defaults,
            seed: 1,
            threads: 2,
            budget_seconds: budget,
            memory_per_fold: u64::MAX,
        };
        let portfolio = || {
            candidates(
                &Strategy::Auto,
                None,
                Task::Classification,
                &Json::Null,
                &Json::Null,
                300,
                1,
            )
            .unwrap()
        };
        let mut reported = 0;
        let trials = run(&cv(None), portfolio(), &Interrupts::none(), &mut |_| {
            reported += 1
        })
        .unwrap();
        assert_eq!(reported, trials.len());
        assert!(trials
            .iter()
            .all(|t| t.status == Status::Done && t.fold_scores.len() == 3));
        assert!(winner(&trials).unwrap().mean > 0.9);
        let rushed = run(
            &cv(Some(1e-9)),
            portfolio(),
            &Interrupts::none(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            rushed[0].status,
            Status::Done,
            "the first trial always runs"
        );
        assert!(rushed[1..].iter().all(|t| t.status == Status::Skipped));
        for folds in [1, 301] {
            let bad = CrossValidation { folds, ..cv(None) };
            assert!(run(&bad, portfolio(), &Interrupts::none(), &mut |_| {}).is_err());
        }
    }

    #[test]
    fn successive_halving_plans_rungs_of_three_times_the_rows() {
        // Few rows, or one candidate: every candidate on every row.
        assert_eq!(rungs(30_000, 7), [30_000]);
        assert_eq!(rungs(1_000_000, 1), [1_000_000]);
        // auto at a million rows: three candidates, one rung of 10,000.
        assert_eq!(rungs(800_000, 3), [10_000]);
        assert_eq!(planned_trials(800_000, 3), 3);
        assert_eq!(rungs(100_000, 6), [10_000, 30_000]);
        assert_eq!(planned_trials(100_000, 6), 6 + 2);
        // When the rows run out before one candidate is left, the last
        // rung is every row.
        assert_eq!(rungs(50_000, 30), [10_000, 30_000, 50_000]);
        assert_eq!(planned_trials(50_000, 30), 30 + 10 + 4);
    }

    #[test]
    fn halving_screens_on_subsamples_and_the_winner_comes_from_the_last_rung() {
        // 40,000 rows; the label needs both features and a product of them,
        // which gaussian_nb cannot draw.
        let n = 40_000;
        let mut records = Vec::with_capacity(n * 2);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b) = (
                ((i * 7919) % 1000) as f64 / 1000.0,
                ((i * 104_729) % 997) as f64 / 997.0,
            );
            records.extend([a, b]);
            labels.push(((a - 0.5) * (b - 0.5) > 0.0).to_string());
        }
        let d = Dataset::new(
            vec!["a".into(), "b".into()],
            records,
            RawLabels::Classes(LabelKind::Boolean, labels),
        )
        .unwrap();
        let rows: Vec<usize> = (0..n).collect();
        let defaults =
            |spec: &'static AlgorithmSpec| crate::ml::preprocess::default_options(&d, spec.inputs);
        let cv = CrossValidation {
            data: &d,
            rows: &rows,
            folds: 3,
            preprocess: &defaults,
            seed: 1,
            threads: 2,
            budget_seconds: None,
            memory_per_fold: u64::MAX,
        };
        let four = [
            "gaussian_nb",
            "hist_gbm",
            "logistic_regression",
            "decision_tree",
        ]
        .map(|name| Candidate {
            algorithm: algorithms::lookup(name).unwrap(),
            params: Hyperparams::validate(
                name,
                algorithms::lookup(name)
                    .unwrap()
                    .params(Task::Classification)
                    .unwrap(),
                &Json::Null,
            )
            .unwrap(),
        })
        .to_vec();
        let trials = run(&cv, four, &Interrupts::none(), &mut |_| {}).unwrap();
        // 4 on 10,000 rows, the best 2 on 30,000, then one is left.
        let sizes: Vec<usize> = trials.iter().map(|t| t.rows).collect();
        assert_eq!(sizes, [10_000, 10_000, 10_000, 10_000, 30_000, 30_000]);
        let second: Vec<&str> = trials[4..]
            .iter()
            .map(|t| t.candidate.algorithm.name)
            .collect();
        assert!(!second.contains(&"gaussian_nb") && !second.contains(&"logistic_regression"));
        let best = winner(&trials).unwrap();
        assert_eq!(best.rows, 30_000);
        assert!(best.mean > 0.95, "{}", best.mean);
        // The same seed screens the same way.
        let again = run(
            &cv,
            trials.iter().take(4).map(|t| t.candidate.clone()).collect(),
            &Interrupts::none(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            again.iter().map(|t| t.mean).collect::<Vec<_>>(),
            trials.iter().map(|t| t.mean).collect::<Vec<_>>()
        );
    }
}
