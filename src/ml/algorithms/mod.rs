//! Every algorithm sits behind the same two things: an `AlgorithmSpec` in
//! `ALGORITHMS` (name, tasks, hyper-parameters per task, fit, memory
//! estimate) and the `Predictor` trait its fitted form implements.

mod adaboost;
mod decision_tree;
mod elastic_net;
mod gaussian_nb;
mod gbm;
mod hist_gbm;
mod knn;
mod linear_regression;
mod logistic_regression;
mod random_forest;
mod svm;
pub mod tree;

pub use adaboost::AdaBoost;
pub use gaussian_nb::GaussianNb;
pub use gbm::Gbm;
pub use hist_gbm::{HistGbm, HistTree};
pub use knn::Neighbours;
pub use linear_regression::LinearModel;
pub use logistic_regression::SoftmaxModel;
pub use random_forest::Forest;
pub use svm::Svm;
pub use tree::Tree;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, Labels};
use super::hyperparams::{Hyperparams, ParamSpec};
pub use super::preprocess::InputStyle;
use super::{Interrupts, MemoryBudget, MlError, MlResult, Task};

pub trait Predictor: Sync {
    /// The class index (as a number) or the regression estimate.
    fn predict(&self, x: &[f64]) -> f64;
    /// Class probabilities in class order; `None` for regressors.
    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>>;
}

/// A fitted model, as stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Estimator {
    Tree(Tree),
    Forest(Forest),
    Linear(LinearModel),
    Softmax(SoftmaxModel),
    GaussianNb(GaussianNb),
    Gbm(Gbm),
    AdaBoost(AdaBoost),
    Knn(Neighbours),
    Svm(Svm),
    HistGbm(HistGbm),
}

impl Estimator {
    pub fn predictor(&self) -> &dyn Predictor {
        match self {
            Estimator::Tree(m) => m,
            Estimator::Forest(m) => m,
            Estimator::Linear(m) => m,
            Estimator::Softmax(m) => m,
            Estimator::GaussianNb(m) => m,
            Estimator::Gbm(m) => m,
            Estimator::AdaBoost(m) => m,
            Estimator::Knn(m) => m,
            Estimator::Svm(m) => m,
            Estimator::HistGbm(m) => m,
        }
    }

    /// Fills what serde skips; call after decoding, once `validate` has
    /// passed.
    pub fn prepared(self) -> Self {
        match self {
            Estimator::HistGbm(m) => Estimator::HistGbm(m.compiled()),
            other => other,
        }
    }

    /// Checks, after decoding, that the estimator fits the model around it,
    /// so damaged bytes that still decode cannot index out of bounds.
    /// `classes` is 0 for a regressor.
    pub fn validate(&self, n_features: usize, classes: usize) -> MlResult<()> {
        let outputs = classes.max(1);
        match self {
            Estimator::Tree(tree) => tree.validate(n_features, outputs),
            Estimator::Forest(forest) => forest.validate(n_features, outputs),
            Estimator::Linear(linear) if classes == 0 => linear.validate(n_features),
            Estimator::Softmax(m) => m.validate(n_features, classes),
            Estimator::GaussianNb(m) => m.validate(n_features, classes),
            Estimator::Gbm(m) => m.validate(n_features, classes),
            Estimator::AdaBoost(m) => m.validate(n_features, classes),
            Estimator::Knn(m) => m.validate(n_features, classes),
            Estimator::Svm(m) => m.validate(n_features, classes),
            Estimator::HistGbm(m) => m.validate(n_features, classes),
            Estimator::Linear(_) => Err(MlError::corrupt(
                "artifact is not readable: a linear model cannot be a classifier",
            )),
        }
    }
}

impl Predictor for Tree {
    fn predict(&self, x: &[f64]) -> f64 {
        if self.n_outputs > 1 {
            self.class_of(x) as f64
        } else {
            self.value(self.leaf_of(x))[0]
        }
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        (self.n_outputs > 1).then(|| self.value(self.leaf_of(x)).to_vec())
    }
}

/// An algorithm's hyper-parameters for one task it supports.
pub struct TaskParams {
    pub task: Task,
    pub params: &'static [ParamSpec],
}

pub struct AlgorithmSpec {
    pub name: &'static str,
    /// One line for `ambient.algorithms`.
    pub description: &'static str,
    pub tasks: &'static [TaskParams],
    /// What the fit takes, which sets the preprocessing defaults: numbers
    /// as they are (trees, naive Bayes), standardised (linear models, kNN,
    /// SVM), or missing values and categories as they are (hist_gbm).
    pub inputs: InputStyle,
    pub fit: fn(&TrainingData<'_>) -> MlResult<Estimator>,
    /// What `fit` allocates for data of this shape, in bytes, whatever the
    /// data, so the caller can refuse before anything is allocated. What
    /// grows with the data (tree nodes) is taken from `TrainingData::memory`
    /// as it is allocated.
    pub estimated_bytes: fn(&Shape, &Hyperparams) -> u64,
}

impl AlgorithmSpec {
    /// The hyper-parameters this algorithm takes for `task`, or why it
    /// cannot do that task.
    pub fn params(&self, task: Task) -> MlResult<&'static [ParamSpec]> {
        self.tasks
            .iter()
            .find(|t| t.task == task)
            .map(|t| t.params)
            .ok_or_else(|| {
                MlError::invalid(format!(
                    "algorithm {} does not do {}",
                    self.name,
                    task.as_str()
                ))
                .with_hint(format!(
                    "algorithms for {}: {}",
                    task.as_str(),
                    for_task(task)
                        .map(|a| a.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

/// The size of a training job, for memory estimates.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: usize,
    pub features: usize,
    /// Classes of a classifier; 0 for regression.
    pub classes: usize,
    /// Threads the fit may use, each with its own working memory.
    pub threads: usize,
}

pub const ALGORITHMS: &[AlgorithmSpec] = &[
    hist_gbm::SPEC,
    decision_tree::SPEC,
    random_forest::SPEC,
    gbm::SPEC,
    adaboost::SPEC,
    knn::SPEC,
    svm::SPEC,
    logistic_regression::SPEC,
    gaussian_nb::SPEC,
    linear_regression::SPEC,
    elastic_net::RIDGE,
    elastic_net::LASSO,
    elastic_net::ELASTIC_NET,
];

/// What `train` fits when no algorithm is named.
pub fn default_for(task: Task) -> &'static str {
    match task {
        Task::Classification | Task::Regression => "hist_gbm",
    }
}

pub fn for_task(task: Task) -> impl Iterator<Item = &'static AlgorithmSpec> {
    ALGORITHMS
        .iter()
        .filter(move |a| a.tasks.iter().any(|t| t.task == task))
}

pub fn lookup(name: &str) -> MlResult<&'static AlgorithmSpec> {
    ALGORITHMS.iter().find(|a| a.name == name).ok_or_else(|| {
        MlError::invalid(format!("unknown algorithm \"{name}\"")).with_hint(format!(
            "available algorithms: {} (see ambient.algorithms)",
            ALGORITHMS
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The training side of a split, with the validated hyper-parameters, the
/// seed, the threads to use and the caller's interrupt check.
pub struct TrainingData<'a> {
    pub dataset: &'a Dataset,
    pub rows: &'a [usize],
    pub params: &'a Hyperparams,
    pub seed: u64,
    pub threads: usize,
    /// What the fit may take beyond `estimated_bytes` as it grows.
    pub memory: &'a MemoryBudget,
    pub interrupts: &'a Interrupts<'a>,
}

impl TrainingData<'_> {
    /// The training rows as one row-major matrix.
    pub fn records(&self) -> Array2<f64> {
        let width = self.dataset.width();
        let mut flat = Vec::with_capacity(self.rows.len() * width);
        for &i in self.rows {
            flat.extend_from_slice(self.dataset.row(i));
        }
        Array2::from_shape_vec((self.rows.len(), width), flat)
            .expect("rows are all dataset.width() long")
    }

    pub fn class_indices(&self) -> Option<(Array1<usize>, usize)> {
        match &self.dataset.labels {
            Labels::Classes { encoding, index } => Some((
                self.rows.iter().map(|&i| index[i]).collect(),
                encoding.classes.len(),
            )),
            Labels::Values(_) => None,
        }
    }

    pub fn targets(&self) -> Array1<f64> {
        self.rows
            .iter()
            .map(|&i| self.dataset.label_value(i))
            .collect()
    }
}

/// A seed for unit `i` of a fit (a tree, a fold), so each unit's randomness
/// depends on the seed and its own number, not on which thread ran it or
/// when.
pub fn unit_seed(seed: u64, i: usize) -> u64 {
    // SplitMix64's finaliser spreads neighbouring numbers apart.
    let mut z = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The targets a tree learns from, for every training row.
pub enum TreeTargets {
    Classes { index: Vec<u32>, n_classes: usize },
    Values(Vec<f64>),
}

impl TreeTargets {
    pub fn of(data: &TrainingData<'_>) -> Self {
        match data.class_indices() {
            Some((index, n_classes)) => TreeTargets::Classes {
                index: index.iter().map(|&k| k as u32).collect(),
                n_classes,
            },
            None => TreeTargets::Values(data.targets().to_vec()),
        }
    }

    pub fn borrowed(&self) -> tree::Targets<'_> {
        match self {
            TreeTargets::Classes { index, n_classes } => tree::Targets::Classes {
                index,
                n_classes: *n_classes,
            },
            TreeTargets::Values(values) => tree::Targets::Values(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::artifact;
    use crate::ml::dataset::{LabelKind, RawLabels};
    use crate::ml::model::train_with_defaults;

    /// Three classes on two informative columns, one noise column.
    fn classes() -> Dataset {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..300 {
            let c = i % 3;
            let jitter = ((i * 37) % 17) as f64 / 17.0;
            records.extend([
                c as f64 * 2.0 + jitter,
                (c as f64 - 1.0) * jitter + ((i * 7) % 5) as f64 / 10.0,
                ((i * 31) % 11) as f64,
            ]);
            labels.push(["setosa", "versicolor", "virginica"][c].to_string());
        }
        Dataset::new(
            vec!["a".into(), "b".into(), "noise".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap()
    }

    fn values() -> Dataset {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..300 {
            let (a, b) = ((i % 20) as f64, ((i * 7) % 11) as f64);
            records.extend([a, b, ((i * 31) % 13) as f64]);
            y.push(3.0 + 2.0 * a - 0.5 * b + ((i * 17) % 5) as f64 / 10.0);
        }
        Dataset::new(
            vec!["a".into(), "b".into(), "noise".into()],
            records,
            RawLabels::Values(y),
        )
        .unwrap()
    }

    fn fit(
        spec: &'static AlgorithmSpec,
        data: &Dataset,
        threads: usize,
    ) -> crate::ml::model::Trained {
        train_with_defaults(data, spec.name, 42, threads)
    }

    #[test]
    fn every_algorithm_fits_predicts_round_trips_and_repeats_itself_on_every_task() {
        for spec in ALGORITHMS {
            for task in spec.tasks.iter().map(|t| t.task) {
                let data = match task {
                    Task::Classification => classes(),
                    Task::Regression => values(),
                };
                let trained = fit(spec, &data, 2);
                // Defaults must learn, not be tuned: elastic net's default
                // penalty (scikit-learn's alpha 1 on standardised inputs)
                // shrinks its coefficients by about a third (r2 0.86 here).
                let (metric, bar) = match task {
                    Task::Classification => ("f1", 0.9),
                    Task::Regression => ("r2", 0.8),
                };
                let score = trained.metrics[metric];
                assert!(score >= bar, "{} {task:?}: {metric} {score}", spec.name);
                let bytes = artifact::encode(&trained.model).unwrap();
                let again = artifact::encode(&fit(spec, &data, 1).model).unwrap();
                assert!(bytes == again, "{} {task:?}: artifacts differ", spec.name);
                let back =
                    artifact::decode_verified(&bytes, &artifact::sha256_hex(&bytes)).unwrap();
                // Compared as bytes: a kept-missing fill is NaN, which is
                // never equal to itself.
                assert!(
                    artifact::encode(&back).unwrap() == bytes,
                    "{} {task:?}: the decoded model encodes differently",
                    spec.name
                );
                let mut x = Vec::new();
                for i in 0..data.n_rows() {
                    let values: Vec<_> = crate::ml::preprocess::raw_values(&data, i).collect();
                    back.encode(&values, &mut x).unwrap();
                    let x = &x[..];
                    assert_eq!(back.predict_value(x), trained.model.predict_value(x));
                    if task == Task::Classification {
                        let p = back.predict_proba(x).unwrap();
                        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{}", spec.name);
                        assert_eq!(
                            logistic_regression::argmax(&p) as f64,
                            back.estimator.predictor().predict(x),
                            "{}: proba and class disagree",
                            spec.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_algorithm_refuses_a_task_it_does_not_do() {
        let err = lookup("gaussian_nb")
            .unwrap()
            .params(Task::Regression)
            .unwrap_err();
        assert!(
            err.message.contains("does not do regression"),
            "{}",
            err.message
        );
        assert!(err.hint.unwrap().contains("random_forest"));
    }

    #[test]
    fn the_default_algorithm_does_both_tasks() {
        for task in [Task::Classification, Task::Regression] {
            assert!(lookup(default_for(task)).unwrap().params(task).is_ok());
        }
    }
}
