//! `logistic_regression`: multinomial (softmax) logistic regression with an
//! L2 penalty, fitted by L-BFGS through linfa-logistic. Two classes give the
//! usual binary model.

use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use serde::{Deserialize, Serialize};

use super::{AlgorithmSpec, Estimator, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "logistic_regression",
    description: "softmax regression with an L2 penalty, by L-BFGS (linfa-logistic)",
    tasks: &[TaskParams {
        task: Task::Classification,
        params: &[
            ParamSpec {
                name: "alpha",
                kind: ParamKind::Float {
                    min: 0.0,
                    max: 1e9,
                    nullable: false,
                },
                default: "1.0",
            },
            ParamSpec {
                name: "max_iterations",
                kind: ParamKind::Integer {
                    min: 1,
                    max: 100_000,
                    nullable: false,
                },
                default: "100",
            },
            ParamSpec {
                name: "gradient_tolerance",
                kind: ParamKind::Float {
                    min: 0.0,
                    max: 1.0,
                    nullable: false,
                },
                default: "0.0001",
            },
            ParamSpec {
                name: "fit_intercept",
                kind: ParamKind::Boolean,
                default: "true",
            },
        ],
    }],
    scales_inputs: true,
    fit,
    estimated_bytes,
};

/// Class scores `W·x + b`, turned into probabilities by softmax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxModel {
    /// `n_classes × n_features`, class after class.
    pub weights: Vec<f64>,
    pub intercepts: Vec<f64>,
}

impl SoftmaxModel {
    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        if n_classes < 2
            || self.intercepts.len() != n_classes
            || self.weights.len() != n_classes * n_features
        {
            return Err(MlError::corrupt(
                "logistic artifact: weights do not match the features and classes",
            ));
        }
        Ok(())
    }

    fn scores(&self, x: &[f64]) -> Vec<f64> {
        let f = x.len();
        self.intercepts
            .iter()
            .enumerate()
            .map(|(k, b)| {
                b + self.weights[k * f..(k + 1) * f]
                    .iter()
                    .zip(x)
                    .map(|(w, v)| w * v)
                    .sum::<f64>()
            })
            .collect()
    }
}

/// Softmax of scores; a class that can never be chosen scores -inf.
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// The first class of highest score.
pub fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (k, &v)| if v > values[best] { k } else { best })
}

impl Predictor for SoftmaxModel {
    fn predict(&self, x: &[f64]) -> f64 {
        argmax(&self.scores(x)) as f64
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        Some(softmax(&self.scores(x)))
    }
}

/// The records, linfa's one-hot targets and its gradient buffers.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    let classes = shape.classes.max(2) as u64;
    rows * shape.features as u64 * 8
        + 3 * rows * classes * 8
        + 16 * classes * (shape.features as u64 + 1) * 8
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let params = data.params;
    let (classes, n_classes) = data
        .class_indices()
        .ok_or_else(|| MlError::invalid("logistic_regression needs class labels"))?;
    data.interrupts.check()?;
    let dataset = linfa::Dataset::new(data.records(), classes);
    let fitted = MultiLogisticRegression::default()
        .alpha(params.float("alpha").unwrap_or(1.0))
        .max_iterations(params.integer("max_iterations").unwrap_or(100) as u64)
        .gradient_tolerance(params.float("gradient_tolerance").unwrap_or(1e-4))
        .with_intercept(params.boolean("fit_intercept").unwrap_or(true))
        .fit(&dataset)
        .map_err(|e| {
            MlError::insufficient(format!("logistic regression could not be fitted: {e}"))
        })?;
    let n_features = data.dataset.width();
    // linfa's columns are the classes the training rows have, in order; a
    // class only the test rows have can never be predicted.
    let mut model = SoftmaxModel {
        weights: vec![0.0; n_classes * n_features],
        intercepts: vec![f64::NEG_INFINITY; n_classes],
    };
    for (column, &class) in fitted.classes().iter().enumerate() {
        model.intercepts[class] = fitted.intercept()[column];
        for f in 0..n_features {
            model.weights[class * n_features + f] = fitted.params()[[f, column]];
        }
    }
    if model.weights.iter().any(|w| !w.is_finite()) {
        return Err(
            MlError::insufficient("logistic regression gave non-finite weights")
                .with_hint("scale the features, or raise alpha"),
        );
    }
    Ok(Estimator::Softmax(model))
}
