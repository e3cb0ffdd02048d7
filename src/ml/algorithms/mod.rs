//! Every algorithm sits behind the same two things: an `AlgorithmSpec` in
//! `ALGORITHMS` (name, tasks, hyper-parameters per task, fit, memory
//! estimate) and the `Predictor` trait its fitted form implements.

mod decision_tree;
mod linear_regression;
mod random_forest;
pub mod tree;

pub use linear_regression::LinearModel;
pub use random_forest::Forest;
pub use tree::Tree;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, Labels};
use super::hyperparams::{Hyperparams, ParamSpec};
use super::{Interrupts, MlError, MlResult, Task};

pub trait Predictor {
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
}

impl Estimator {
    pub fn predictor(&self) -> &dyn Predictor {
        match self {
            Estimator::Tree(m) => m,
            Estimator::Forest(m) => m,
            Estimator::Linear(m) => m,
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
    pub fit: fn(&TrainingData<'_>) -> MlResult<Estimator>,
    /// The most `fit` allocates for data of this shape, in bytes, so the
    /// caller can refuse before anything is allocated.
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
    decision_tree::SPEC,
    random_forest::SPEC,
    linear_regression::SPEC,
];

/// What `train` fits when no algorithm is named.
pub fn default_for(task: Task) -> &'static str {
    match task {
        Task::Classification | Task::Regression => "random_forest",
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
    pub interrupts: &'a Interrupts<'a>,
}

impl TrainingData<'_> {
    /// The rows as linfa wants them.
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
