//! `adaboost`: scikit-learn's `AdaBoostClassifier` (SAMME): `n_estimators`
//! shallow trees, each grown on the rows re-weighted towards the previous
//! trees' mistakes, voting with weights that grow with their accuracy.
//!
//! linfa-ensemble 0.8.1 has AdaBoost, but it resamples rows instead of
//! weighting them, grows linfa-trees (see `tree.rs`), keeps no class
//! probabilities, and breaks vote ties through a `HashMap`'s iteration
//! order, so the same data can give different answers. Our tree learner
//! takes row weights, so SAMME is the few lines below.

use serde::{Deserialize, Serialize};

use super::logistic_regression::{argmax, softmax};
use super::tree::{self, Criterion, Presorted, Tree, TreeSettings};
use super::{
    AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData, TreeTargets,
};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "adaboost",
    description: "boosted shallow trees, SAMME (scikit-learn's AdaBoostClassifier)",
    tasks: &[TaskParams {
        task: Task::Classification,
        params: &[
            ParamSpec {
                name: "n_estimators",
                kind: ParamKind::Integer {
                    min: 1,
                    max: 10_000,
                    nullable: false,
                },
                default: "50",
            },
            ParamSpec {
                name: "learning_rate",
                kind: ParamKind::Float {
                    min: f64::MIN_POSITIVE,
                    max: 100.0,
                    nullable: false,
                },
                default: "1.0",
            },
            ParamSpec {
                name: "max_depth",
                kind: ParamKind::Integer {
                    min: 1,
                    max: 64,
                    nullable: false,
                },
                default: "1",
            },
        ],
    }],
    inputs: InputStyle::Plain,
    fit,
    estimated_bytes,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaBoost {
    pub trees: Vec<Tree>,
    /// Each tree's say in the vote.
    pub weights: Vec<f64>,
}

impl AdaBoost {
    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        if self.trees.is_empty() || self.trees.len() != self.weights.len() {
            return Err(MlError::corrupt("adaboost artifact: misshapen"));
        }
        self.trees
            .iter()
            .try_for_each(|t| t.validate(n_features, n_classes))
    }

    /// Each class's share of the weighted vote.
    fn votes(&self, x: &[f64]) -> Vec<f64> {
        let k = self.trees[0].n_outputs as usize;
        let mut votes = vec![0.0; k];
        for (tree, w) in self.trees.iter().zip(&self.weights) {
            votes[tree.class_of(x)] += w;
        }
        let total: f64 = self.weights.iter().sum();
        votes.iter_mut().for_each(|v| *v /= total);
        votes
    }
}

impl Predictor for AdaBoost {
    fn predict(&self, x: &[f64]) -> f64 {
        argmax(&self.votes(x)) as f64
    }

    /// scikit-learn's SAMME probabilities: a softmax of the normalised
    /// votes over (classes − 1).
    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        let votes = self.votes(x);
        let k = votes.len() as f64;
        Some(softmax(
            &votes.iter().map(|v| v / (k - 1.0)).collect::<Vec<_>>(),
        ))
    }
}

fn settings(params: &Hyperparams) -> TreeSettings {
    TreeSettings {
        max_depth: params.integer("max_depth").unwrap_or(1) as usize,
        min_samples_split: 2,
        min_samples_leaf: 1,
        min_impurity_decrease: 0.0,
        criterion: Criterion::Gini,
        max_features: None,
    }
}

/// The presorted columns, the row weights and mistakes, one tree growing;
/// the trees' nodes are taken from the memory budget as they grow.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    Presorted::bytes(shape.rows, shape.features)
        + rows * 24
        + TreeSettings::working_bytes(rows, shape.features)
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let presorted = Presorted::new(data)?;
    let targets = TreeTargets::of(data);
    let TreeTargets::Classes { index, n_classes } = &targets else {
        return Err(MlError::invalid("adaboost needs class labels"));
    };
    let settings = settings(data.params);
    let rounds = data.params.integer("n_estimators").unwrap_or(50) as usize;
    let rate = data.params.float("learning_rate").unwrap_or(1.0);
    let rows: Vec<&[f64]> = data.rows.iter().map(|&i| data.dataset.row(i)).collect();
    let n = rows.len();
    let mut weights = vec![1.0 / n as f64; n];
    let mut trees = Vec::new();
    let mut say = Vec::new();
    let k = *n_classes as f64;
    for _ in 0..rounds {
        data.interrupts.check()?;
        let tree = tree::grow(
            &presorted,
            &targets.borrowed(),
            Some(&weights),
            &settings,
            0,
            data.memory,
            data.interrupts,
        )?;
        let wrong: Vec<bool> = rows
            .iter()
            .zip(index.iter())
            .map(|(x, &class)| tree.class_of(x) != class as usize)
            .collect();
        let total: f64 = weights.iter().sum();
        let error = weights
            .iter()
            .zip(&wrong)
            .filter(|(_, &w)| w)
            .map(|(v, _)| v)
            .sum::<f64>()
            / total;
        if error <= 0.0 {
            // A perfect tree ends the boosting with a say of 1, as in
            // scikit-learn.
            trees.push(tree);
            say.push(1.0);
            break;
        }
        if error >= 1.0 - 1.0 / k {
            // No better than chance: stop, keeping what came before.
            if trees.is_empty() {
                return Err(MlError::insufficient(
                    "adaboost's first tree is no better than chance",
                )
                .with_hint("allow deeper trees with max_depth"));
            }
            break;
        }
        let alpha = rate * (((1.0 - error) / error).ln() + (k - 1.0).ln());
        for (w, &bad) in weights.iter_mut().zip(&wrong) {
            if bad {
                *w *= alpha.exp();
            }
        }
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        trees.push(tree);
        say.push(alpha);
    }
    Ok(Estimator::AdaBoost(AdaBoost {
        trees,
        weights: say,
    }))
}
