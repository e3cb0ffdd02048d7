//! `gaussian_nb`: Gaussian naive Bayes, as scikit-learn's `GaussianNB`
//! (variances smoothed by `var_smoothing` times the largest feature
//! variance).
//!
//! linfa-bayes 0.8.1 has it, but keeps the classes in a `HashMap` with
//! private fields: its serialized bytes change from run to run, which breaks
//! the byte-identical artifacts every algorithm here gives. The fit is a
//! mean and a variance per class and feature, so it is done here.

use serde::{Deserialize, Serialize};

use super::logistic_regression::{argmax, softmax};
use super::{AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "gaussian_nb",
    description: "Gaussian naive Bayes (scikit-learn's GaussianNB)",
    tasks: &[TaskParams {
        task: Task::Classification,
        params: &[ParamSpec {
            name: "var_smoothing",
            kind: ParamKind::Float {
                min: f64::MIN_POSITIVE,
                max: 1.0,
                nullable: false,
            },
            default: "1e-9",
        }],
    }],
    inputs: InputStyle::Plain,
    fit,
    estimated_bytes,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianNb {
    /// ln of each class's share of the training rows (-inf if none).
    pub log_priors: Vec<f64>,
    /// Per class, per feature: mean and (smoothed) variance.
    pub means: Vec<f64>,
    pub variances: Vec<f64>,
}

impl GaussianNb {
    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        let cells = n_classes * n_features;
        if n_classes < 2
            || self.log_priors.len() != n_classes
            || self.means.len() != cells
            || self.variances.len() != cells
        {
            return Err(MlError::corrupt(
                "naive Bayes artifact: does not match the features and classes",
            ));
        }
        Ok(())
    }

    fn joint_log_likelihood(&self, x: &[f64]) -> Vec<f64> {
        let f = x.len();
        self.log_priors
            .iter()
            .enumerate()
            .map(|(k, prior)| {
                let (means, vars) = (
                    &self.means[k * f..(k + 1) * f],
                    &self.variances[k * f..(k + 1) * f],
                );
                prior
                    - 0.5
                        * x.iter()
                            .zip(means.iter().zip(vars))
                            .map(|(v, (m, s))| {
                                (2.0 * std::f64::consts::PI * s).ln() + (v - m) * (v - m) / s
                            })
                            .sum::<f64>()
            })
            .collect()
    }
}

impl Predictor for GaussianNb {
    fn predict(&self, x: &[f64]) -> f64 {
        argmax(&self.joint_log_likelihood(x)) as f64
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        Some(softmax(&self.joint_log_likelihood(x)))
    }
}

fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    (3 * shape.classes.max(2) as u64 + 2) * shape.features as u64 * 8
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let (classes, k) = data
        .class_indices()
        .ok_or_else(|| MlError::invalid("gaussian_nb needs class labels"))?;
    let f = data.dataset.width();
    let mut counts = vec![0usize; k];
    let mut sums = vec![0.0; k * f];
    for (&row, &class) in data.rows.iter().zip(&classes) {
        counts[class] += 1;
        for (s, v) in sums[class * f..(class + 1) * f]
            .iter_mut()
            .zip(data.dataset.row(row))
        {
            *s += v;
        }
    }
    data.interrupts.check()?;
    let means: Vec<f64> = (0..k * f)
        .map(|cell| sums[cell] / counts[cell / f].max(1) as f64)
        .collect();
    let mut squares = vec![0.0; k * f];
    let mut all_sum = vec![0.0; f];
    let mut all_squares = vec![0.0; f];
    for (&row, &class) in data.rows.iter().zip(&classes) {
        for (j, v) in data.dataset.row(row).iter().enumerate() {
            let d = v - means[class * f + j];
            squares[class * f + j] += d * d;
            all_sum[j] += v;
            all_squares[j] += v * v;
        }
    }
    data.interrupts.check()?;
    let n = data.rows.len() as f64;
    let largest_variance = (0..f)
        .map(|j| (all_squares[j] / n - (all_sum[j] / n).powi(2)).max(0.0))
        .fold(0.0, f64::max);
    let epsilon = data.params.float("var_smoothing").unwrap_or(1e-9) * largest_variance;
    if epsilon <= 0.0 {
        return Err(MlError::insufficient("every feature is constant")
            .with_hint("naive Bayes needs a feature that varies"));
    }
    let variances = (0..k * f)
        .map(|cell| squares[cell] / counts[cell / f].max(1) as f64 + epsilon)
        .collect();
    let log_priors = counts.iter().map(|&c| (c as f64 / n).ln()).collect();
    Ok(Estimator::GaussianNb(GaussianNb {
        log_priors,
        means,
        variances,
    }))
}
