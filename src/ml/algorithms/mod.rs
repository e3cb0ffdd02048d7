//! Every algorithm sits behind the same two things: an `AlgorithmSpec` in
//! `ALGORITHMS` (name, task, hyper-parameters, fit) and the `Predictor`
//! trait its fitted form implements.

mod decision_tree;
mod linear_regression;

pub use decision_tree::ClassificationTree;
pub use linear_regression::LinearModel;

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
    DecisionTree(ClassificationTree),
    LinearRegression(LinearModel),
}

impl Estimator {
    pub fn predictor(&self) -> &dyn Predictor {
        match self {
            Estimator::DecisionTree(m) => m,
            Estimator::LinearRegression(m) => m,
        }
    }
}

pub struct AlgorithmSpec {
    pub name: &'static str,
    pub task: Task,
    pub params: &'static [ParamSpec],
    pub fit: fn(&TrainingData<'_>) -> MlResult<Estimator>,
    /// The most `fit` allocates for data of this shape, in bytes, so the
    /// caller can refuse before anything is allocated.
    pub estimated_bytes: fn(&Shape, &Hyperparams) -> u64,
}

/// The size of a training set, for memory estimates.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: usize,
    pub features: usize,
    /// Classes of a classifier; 0 for regression.
    pub classes: usize,
}

pub const ALGORITHMS: &[AlgorithmSpec] = &[decision_tree::SPEC, linear_regression::SPEC];

pub fn lookup(name: &str) -> MlResult<&'static AlgorithmSpec> {
    ALGORITHMS.iter().find(|a| a.name == name).ok_or_else(|| {
        MlError::invalid(format!("unknown algorithm \"{name}\"")).with_hint(format!(
            "available algorithms: {}",
            ALGORITHMS
                .iter()
                .map(|a| format!("{} ({})", a.name, a.task.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The training side of a split, with the validated hyper-parameters and
/// the caller's interrupt check.
pub struct TrainingData<'a> {
    pub dataset: &'a Dataset,
    pub rows: &'a [usize],
    pub params: &'a Hyperparams,
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
