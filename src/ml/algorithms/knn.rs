//! `knn`: k-nearest neighbours (scikit-learn's `KNeighbors*`), for both
//! tasks. The model keeps its (preprocessed, by default standardised)
//! training rows and compares a row with every one of them: predicting
//! costs rows × features, so it suits tables of thousands of rows, not
//! millions. Neighbours at equal distance are taken in training-row order,
//! so answers do not depend on anything but the data. The artifact holds
//! the training rows verbatim; like every artifact it is readable only by
//! the extension owner.
//!
//! linfa-nn 0.8.1 has the search structures (its k-d tree borrows the
//! rows it indexes, so it cannot live in a decoded, cached model) but no
//! classifier or regressor; the vote and the mean are a few lines here.

use serde::{Deserialize, Serialize};

use super::logistic_regression::argmax;
use super::{AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "n_neighbors",
        kind: ParamKind::Integer {
            min: 1,
            max: 10_000,
            nullable: false,
        },
        default: "5",
    },
    ParamSpec {
        name: "weights",
        kind: ParamKind::Choice(&["uniform", "distance"]),
        default: "\"uniform\"",
    },
    ParamSpec {
        name: "metric",
        kind: ParamKind::Choice(&["euclidean", "manhattan"]),
        default: "\"euclidean\"",
    },
];

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "knn",
    description: "k-nearest neighbours (scikit-learn's KNeighbors*)",
    tasks: &[
        TaskParams {
            task: Task::Classification,
            params: PARAMS,
        },
        TaskParams {
            task: Task::Regression,
            params: PARAMS,
        },
    ],
    inputs: InputStyle::Scaled,
    fit,
    estimated_bytes,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbours {
    pub k: u32,
    pub by_distance: bool,
    pub manhattan: bool,
    /// Classes of a classifier; 0 for a regressor.
    pub n_classes: u32,
    pub n_features: u32,
    /// The training rows, row-major.
    pub rows: Vec<f64>,
    /// Each row's class index, or its target.
    pub targets: Vec<f64>,
}

impl Neighbours {
    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        let n = self.targets.len();
        let classes_fit = self
            .targets
            .iter()
            .all(|&t| n_classes == 0 || (t >= 0.0 && (t as usize) < n_classes));
        if self.n_features as usize != n_features
            || self.n_classes as usize != n_classes
            || n == 0
            || self.k == 0
            || self.rows.len() != n * n_features
            || !classes_fit
        {
            return Err(MlError::corrupt("knn artifact: misshapen"));
        }
        Ok(())
    }

    /// The nearest rows' (distance, index), nearest first.
    fn nearest(&self, x: &[f64]) -> Vec<(f64, usize)> {
        let f = self.n_features as usize;
        let mut all: Vec<(f64, usize)> = self
            .rows
            .chunks_exact(f)
            .enumerate()
            .map(|(i, row)| {
                let d = if self.manhattan {
                    row.iter().zip(x).map(|(a, b)| (a - b).abs()).sum()
                } else {
                    row.iter()
                        .zip(x)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt()
                };
                (d, i)
            })
            .collect();
        let k = (self.k as usize).min(all.len());
        let by_distance_then_row =
            |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if k < all.len() {
            all.select_nth_unstable_by(k - 1, by_distance_then_row);
            all.truncate(k);
        }
        all.sort_by(by_distance_then_row);
        all
    }

    /// Each neighbour's weight: 1, or the inverse distance (an exact match
    /// takes all the weight, as in scikit-learn).
    fn weighted(&self, x: &[f64]) -> Vec<(f64, f64)> {
        let near = self.nearest(x);
        let exact = near.iter().any(|(d, _)| *d == 0.0);
        near.iter()
            .map(|&(d, i)| {
                let w = match (self.by_distance, exact) {
                    (false, _) => 1.0,
                    (true, true) => f64::from(u8::from(d == 0.0)),
                    (true, false) => 1.0 / d,
                };
                (w, self.targets[i])
            })
            .collect()
    }

    fn class_shares(&self, x: &[f64]) -> Vec<f64> {
        let mut shares = vec![0.0; self.n_classes as usize];
        let near = self.weighted(x);
        let total: f64 = near.iter().map(|(w, _)| w).sum();
        for (w, class) in near {
            shares[class as usize] += w / total;
        }
        shares
    }
}

impl Predictor for Neighbours {
    fn predict(&self, x: &[f64]) -> f64 {
        if self.n_classes > 0 {
            return argmax(&self.class_shares(x)) as f64;
        }
        let near = self.weighted(x);
        let total: f64 = near.iter().map(|(w, _)| w).sum();
        near.iter().map(|(w, y)| w * y).sum::<f64>() / total
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        (self.n_classes > 0).then(|| self.class_shares(x))
    }
}

/// The kept rows and targets, and linfa-free copies made while fitting.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    2 * shape.rows as u64 * (shape.features as u64 + 1) * 8
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    data.interrupts.check()?;
    let params = data.params;
    let n_classes = data.class_indices().map_or(0, |(_, k)| k);
    let n_features = data.dataset.width();
    let mut rows = Vec::with_capacity(data.rows.len() * n_features);
    for &i in data.rows {
        rows.extend_from_slice(data.dataset.row(i));
    }
    Ok(Estimator::Knn(Neighbours {
        k: params.integer("n_neighbors").unwrap_or(5) as u32,
        by_distance: params.text("weights") == Some("distance"),
        manhattan: params.text("metric") == Some("manhattan"),
        n_classes: n_classes as u32,
        n_features: n_features as u32,
        rows,
        targets: data.targets().to_vec(),
    }))
}
