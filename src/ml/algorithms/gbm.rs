//! `gbm`: gradient-boosted regression trees (scikit-learn's
//! `GradientBoosting*`: squared error for regression; log loss for
//! classification, one tree per class and round beyond two classes, each
//! leaf a Newton step), grown by our tree learner on columns sorted once.

use serde::{Deserialize, Serialize};

use super::decision_tree::{MIN_SAMPLES_LEAF, MIN_SAMPLES_SPLIT};
use super::logistic_regression::{argmax, boosted_proba, boosted_shape_fits, sigmoid};
use super::tree::{self, Criterion, Presorted, Tree, TreeSettings};
use super::{AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "n_estimators",
        kind: ParamKind::Integer {
            min: 1,
            max: 100_000,
            nullable: false,
        },
        default: "100",
    },
    ParamSpec {
        name: "learning_rate",
        kind: ParamKind::Float {
            min: f64::MIN_POSITIVE,
            max: 10.0,
            nullable: false,
        },
        default: "0.1",
    },
    ParamSpec {
        name: "max_depth",
        kind: ParamKind::Integer {
            min: 1,
            max: 64,
            nullable: false,
        },
        default: "3",
    },
    MIN_SAMPLES_SPLIT,
    MIN_SAMPLES_LEAF,
];

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "gbm",
    description: "gradient-boosted trees (scikit-learn's GradientBoosting*)",
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
    inputs: InputStyle::Plain,
    fit,
    estimated_bytes,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbm {
    /// Classes of a classifier; 0 for a regressor.
    pub n_classes: u32,
    /// The starting score of each output: one for a regressor or a binary
    /// classifier (the log-odds of the second class), one per class beyond.
    pub init: Vec<f64>,
    /// Round after round, one tree per output; each leaf's value is its
    /// step, learning rate included.
    pub trees: Vec<Tree>,
}

impl Gbm {
    fn outputs(&self) -> usize {
        self.init.len()
    }

    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        if !boosted_shape_fits(self.n_classes, self.init.len(), self.trees.len(), n_classes) {
            return Err(MlError::corrupt("gbm artifact: misshapen"));
        }
        self.trees
            .iter()
            .try_for_each(|t| t.validate(n_features, 1))
    }

    /// The raw scores: the estimate, or log-odds per output.
    pub fn scores(&self, x: &[f64]) -> Vec<f64> {
        let mut scores = self.init.clone();
        let k = self.outputs();
        tree::leaves_of(&self.trees, x, |i, tree, leaf| {
            scores[i % k] += tree.value(leaf)[0];
        });
        scores
    }
}

impl Predictor for Gbm {
    fn predict(&self, x: &[f64]) -> f64 {
        let scores = self.scores(x);
        match self.n_classes {
            0 => scores[0],
            _ => argmax(&boosted_proba(&scores)) as f64,
        }
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        (self.n_classes > 0).then(|| boosted_proba(&self.scores(x)))
    }
}

fn settings(params: &Hyperparams) -> TreeSettings {
    TreeSettings {
        max_depth: params.integer("max_depth").unwrap_or(3) as usize,
        min_samples_split: params.integer("min_samples_split").unwrap_or(2) as usize,
        min_samples_leaf: params.integer("min_samples_leaf").unwrap_or(1) as usize,
        min_impurity_decrease: 0.0,
        criterion: Criterion::SquaredError,
        max_features: None,
    }
}

/// The presorted columns, one tree growing at a time, and the scores,
/// probabilities and residuals per row and output; the trees' nodes are
/// taken from the memory budget as they grow.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    let outputs = if shape.classes > 2 { shape.classes } else { 1 } as u64;
    Presorted::bytes(shape.rows, shape.features)
        + TreeSettings::working_bytes(rows, shape.features)
        + rows * (3 * outputs + 2) * 8
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let presorted = Presorted::new(data)?;
    let settings = settings(data.params);
    let rounds = data.params.integer("n_estimators").unwrap_or(100) as usize;
    let rate = data.params.float("learning_rate").unwrap_or(0.1);
    let n = presorted.n_rows();
    let rows: Vec<&[f64]> = data.rows.iter().map(|&i| data.dataset.row(i)).collect();
    // targets[o][i]: output o's target for row i (the value, or 1 for the
    // row's class and 0 otherwise).
    let (n_classes, targets): (usize, Vec<Vec<f64>>) = match data.class_indices() {
        Some((classes, 2)) => (2, vec![classes.iter().map(|&c| c as f64).collect()]),
        Some((classes, k)) => (
            k,
            (0..k)
                .map(|o| {
                    classes
                        .iter()
                        .map(|&c| f64::from(u8::from(c == o)))
                        .collect()
                })
                .collect(),
        ),
        None => (0, vec![data.targets().to_vec()]),
    };
    let outputs = targets.len();
    let init: Vec<f64> = targets
        .iter()
        .map(|t| {
            let mean = t.iter().sum::<f64>() / n as f64;
            match n_classes {
                0 => mean,
                // Log prior odds, clamped so a class all rows or none have
                // still starts finite.
                _ => {
                    let p = mean.clamp(1e-6, 1.0 - 1e-6);
                    if outputs == 1 {
                        (p / (1.0 - p)).ln()
                    } else {
                        p.ln()
                    }
                }
            }
        })
        .collect();
    let mut scores: Vec<Vec<f64>> = init.iter().map(|&s| vec![s; n]).collect();
    // Grows with the rounds; each tree takes its memory from the budget.
    let mut trees = Vec::new();
    let mut residuals = vec![0.0; n];
    let mut proba = vec![vec![0.0; n]; outputs];
    for _ in 0..rounds {
        data.interrupts.check()?;
        if n_classes > 0 {
            // Each row's probabilities, in place (no allocation per row: a
            // million rows times a hundred rounds).
            for i in 0..n {
                if outputs == 1 {
                    proba[0][i] = sigmoid(scores[0][i]);
                    continue;
                }
                let max = scores
                    .iter()
                    .map(|s| s[i])
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut total = 0.0;
                for o in 0..outputs {
                    let e = (scores[o][i] - max).exp();
                    proba[o][i] = e;
                    total += e;
                }
                for p in proba.iter_mut() {
                    p[i] /= total;
                }
            }
        }
        for o in 0..outputs {
            for i in 0..n {
                residuals[i] = match n_classes {
                    0 => targets[o][i] - scores[o][i],
                    _ => targets[o][i] - proba[o][i],
                };
            }
            let mut tree = tree::grow(
                &presorted,
                &tree::Targets::Values(&residuals),
                None,
                &settings,
                0,
                data.memory,
                data.interrupts,
            )?;
            if n_classes > 0 {
                newton_steps(&mut tree, &rows, &residuals, outputs);
            }
            tree.values.iter_mut().for_each(|v| *v *= rate);
            for (i, x) in rows.iter().enumerate() {
                scores[o][i] += tree.values[tree.leaf_of(x)];
            }
            trees.push(tree);
        }
    }
    Ok(Estimator::Gbm(Gbm {
        n_classes: n_classes as u32,
        init,
        trees,
    }))
}

/// Log loss: each node's value becomes one Newton step over its rows,
/// Σr / Σ|r|(1−|r|) (scaled by (K−1)/K for K > 2 classes), as scikit-learn's
/// gradient boosting does for leaves; a residual r is target minus
/// probability. Inner nodes get theirs too, so a path's changes in value,
/// which `explain` credits to the features split on, are the steps of the
/// nodes along it.
fn newton_steps(tree: &mut Tree, rows: &[&[f64]], residuals: &[f64], outputs: usize) {
    let mut numerator = vec![0.0; tree.nodes.len()];
    let mut denominator = vec![0.0; tree.nodes.len()];
    for (x, &r) in rows.iter().zip(residuals) {
        tree.walk(x, |node| {
            numerator[node] += r;
            denominator[node] += r.abs() * (1.0 - r.abs());
        });
    }
    let scale = if outputs > 1 {
        (outputs as f64 - 1.0) / outputs as f64
    } else {
        1.0
    };
    for (i, value) in tree.values.iter_mut().enumerate() {
        *value = if denominator[i] < 1e-150 {
            0.0
        } else {
            scale * numerator[i] / denominator[i]
        };
    }
}
