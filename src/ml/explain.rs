//! Why a model predicts what it does: importances per feature, and one
//! prediction split into per-input contributions that add up to it.
//!
//! - Trees, forests and boosted trees: path contributions (Saabas): a
//!   prediction is the root's value plus, for each split on its path, the
//!   change in node value, credited to the split's feature. Importances are
//!   the impurity decrease (gain) per feature, as scikit-learn's
//!   `feature_importances_`.
//! - Linear models: coefficient × the (standardised) feature value, plus
//!   the intercept. Importances are the coefficients.
//! - Any model: permutation importance, the fall of its primary metric on
//!   the test split when one input column's values are shuffled.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::algorithms::tree::Tree;
use super::algorithms::Estimator;
use super::algorithms::HistTree;
use super::dataset::Dataset;
use super::model::{EncodedRows, Model};
use super::{Interrupts, MlError, MlResult};

/// One prediction, split up: `bias` plus the sum of `contributions` is the
/// number `explains` names.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub explains: String,
    pub bias: f64,
    /// Per input column, in input order.
    pub contributions: Vec<f64>,
}

/// Test rows used for permutation importance, at most.
pub const PERMUTATION_ROWS: usize = 10_000;

impl Model {
    /// Explains the prediction for one encoded row (see `Model::encode`).
    pub fn explain(&self, x: &[f64]) -> MlResult<Explanation> {
        let class = self.predict_class(x);
        let class_name = |k: usize| {
            self.labels
                .as_ref()
                .map_or(String::new(), |l| format!("\"{}\"", l.classes[k]))
        };
        let (explains, output) = match (&self.estimator, class) {
            (_, None) => ("the estimate".to_string(), 0),
            (Estimator::Tree(_) | Estimator::Forest(_), Some(k)) => {
                (format!("the probability of {}", class_name(k)), k)
            }
            (Estimator::Gbm(g), Some(_)) if g.init.len() == 1 => {
                (format!("the log-odds of {}", class_name(1)), 0)
            }
            (Estimator::HistGbm(g), Some(_)) if g.init.len() == 1 => {
                (format!("the log-odds of {}", class_name(1)), 0)
            }
            (_, Some(k)) => (format!("the score (logit) of {}", class_name(k)), k),
        };
        let (bias, per_feature) = match &self.estimator {
            Estimator::Tree(tree) => path_contributions(tree, x, output),
            Estimator::Forest(forest) => average(
                forest
                    .trees
                    .iter()
                    .map(|t| path_contributions(t, x, output)),
                forest.trees.len(),
                x.len(),
            ),
            Estimator::Gbm(gbm) => boosted(
                gbm.init[output],
                gbm.trees
                    .iter()
                    .skip(output)
                    .step_by(gbm.init.len())
                    .map(|tree| path_contributions(tree, x, 0)),
                x.len(),
            ),
            Estimator::HistGbm(gbm) => boosted(
                gbm.init[output],
                gbm.trees
                    .iter()
                    .skip(output)
                    .step_by(gbm.init.len())
                    .map(|tree| hist_path_contributions(tree, x, gbm.max_bins)),
                x.len(),
            ),
            Estimator::Linear(m) => (
                m.intercept,
                m.coefficients.iter().zip(x).map(|(w, v)| w * v).collect(),
            ),
            Estimator::Softmax(m) => {
                let f = x.len();
                (
                    m.intercepts[output],
                    m.weights[output * f..(output + 1) * f]
                        .iter()
                        .zip(x)
                        .map(|(w, v)| w * v)
                        .collect(),
                )
            }
            Estimator::GaussianNb(_)
            | Estimator::AdaBoost(_)
            | Estimator::Knn(_)
            | Estimator::Svm(_) => {
                return Err(MlError::unsupported(format!(
                    "{} predictions have no additive explanation",
                    self.algorithm
                ))
                .with_hint("ambient.feature_importance gives its permutation importance"))
            }
        };
        Ok(Explanation {
            explains,
            bias,
            contributions: self.per_input(&per_feature),
        })
    }

    /// Sums per-feature values into their input columns (a one-hot
    /// column's slots, a timestamp's parts).
    fn per_input(&self, per_feature: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.inputs.inputs.len()];
        for (&input, v) in self.inputs.feature_inputs().iter().zip(per_feature) {
            out[input] += v;
        }
        out
    }

    /// The model's own importances per encoded feature, and what they are:
    /// impurity decrease for trees, coefficients for linear models (mean
    /// absolute coefficient over the classes of a softmax model).
    pub fn native_importances(&self) -> Option<(&'static str, Vec<f64>)> {
        let mean_of = |trees: &mut dyn Iterator<Item = &Tree>, n: usize| {
            let mut sum = vec![0.0; self.feature_names.len()];
            for t in trees {
                sum.iter_mut()
                    .zip(&t.importances)
                    .for_each(|(s, v)| *s += v / n as f64);
            }
            sum
        };
        match &self.estimator {
            Estimator::Tree(t) => Some(("impurity", t.importances.clone())),
            Estimator::Forest(f) => Some(("impurity", mean_of(&mut f.trees.iter(), f.trees.len()))),
            Estimator::Gbm(g) => Some(("gain", mean_of(&mut g.trees.iter(), g.trees.len()))),
            Estimator::HistGbm(g) => Some(("gain", g.importances.clone())),
            Estimator::Linear(m) => Some(("coefficient", m.coefficients.clone())),
            Estimator::Softmax(m) => {
                let f = self.feature_names.len();
                let k = m.intercepts.len();
                Some((
                    "mean |coefficient|",
                    (0..f)
                        .map(|j| (0..k).map(|c| m.weights[c * f + j].abs()).sum::<f64>() / k as f64)
                        .collect(),
                ))
            }
            Estimator::AdaBoost(a) => {
                let total: f64 = a.weights.iter().sum();
                let mut sum = vec![0.0; self.feature_names.len()];
                for (t, w) in a.trees.iter().zip(&a.weights) {
                    sum.iter_mut()
                        .zip(&t.importances)
                        .for_each(|(s, v)| *s += v * w / total);
                }
                Some(("impurity", sum))
            }
            Estimator::GaussianNb(_) | Estimator::Knn(_) | Estimator::Svm(_) => None,
        }
    }
}

/// Bias and per-feature contributions of one tree's output `k` for `x`.
fn path_contributions(tree: &Tree, x: &[f64], k: usize) -> (f64, Vec<f64>) {
    let mut contributions = vec![0.0; x.len()];
    let path = tree.path(x);
    for pair in path.windows(2) {
        let (node, feature) = pair[0];
        let (child, _) = pair[1];
        if let Some(f) = feature {
            contributions[f] += tree.value(child)[k] - tree.value(node)[k];
        }
    }
    (tree.value(0)[k], contributions)
}

/// The same for a tree of `hist_gbm`.
fn hist_path_contributions(tree: &HistTree, x: &[f64], max_bins: u32) -> (f64, Vec<f64>) {
    let mut contributions = vec![0.0; x.len()];
    let mut previous: Option<(usize, usize)> = None;
    tree.walk(x, max_bins, |node, feature| {
        if let Some((parent, f)) = previous {
            contributions[f] += tree.values[node] - tree.values[parent];
        }
        previous = feature.map(|f| (node, f));
    });
    (tree.values[0], contributions)
}

/// A boosted ensemble's output: its start plus every tree's bias and
/// contributions.
fn boosted(
    init: f64,
    trees: impl Iterator<Item = (f64, Vec<f64>)>,
    width: usize,
) -> (f64, Vec<f64>) {
    let mut bias = init;
    let mut sum = vec![0.0; width];
    for (b, c) in trees {
        bias += b;
        sum.iter_mut().zip(c).for_each(|(s, v)| *s += v);
    }
    (bias, sum)
}

fn average(
    parts: impl Iterator<Item = (f64, Vec<f64>)>,
    n: usize,
    width: usize,
) -> (f64, Vec<f64>) {
    let mut bias = 0.0;
    let mut sum = vec![0.0; width];
    for (b, c) in parts {
        bias += b / n as f64;
        sum.iter_mut().zip(c).for_each(|(s, v)| *s += v / n as f64);
    }
    (bias, sum)
}

/// How much the primary metric falls, per input column, when that column's
/// encoded values are shuffled among the first `PERMUTATION_ROWS` test rows
/// of `encoded` (deterministically, from `seed`).
pub fn permutation_importance(
    model: &Model,
    encoded: &Dataset,
    test: &[usize],
    seed: u64,
    threads: usize,
    interrupts: &Interrupts<'_>,
) -> MlResult<Vec<f64>> {
    let rows = &test[..test.len().min(PERMUTATION_ROWS)];
    let metric = model.task.primary_metric();
    let width = encoded.width();
    let base_records: Vec<f64> = rows
        .iter()
        .flat_map(|&i| encoded.row(i).iter().copied())
        .collect();
    let positions: Vec<usize> = (0..rows.len()).collect();
    let score = |records: &[f64]| -> MlResult<f64> {
        Ok(model
            .score_rows(
                EncodedRows {
                    records,
                    width,
                    at: &positions,
                },
                encoded,
                rows,
                threads,
                interrupts,
            )?
            .get(metric)
            .copied()
            .unwrap_or(f64::NAN))
    };
    let base = score(&base_records)?;
    let inputs = model.inputs.feature_inputs();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..model.inputs.inputs.len())
        .map(|input| {
            interrupts.check()?;
            let mut order = positions.clone();
            order.shuffle(&mut rng);
            let mut shuffled = base_records.clone();
            for (to, &from) in order.iter().enumerate() {
                for j in (0..width).filter(|&j| inputs[j] == input) {
                    shuffled[to * width + j] = base_records[from * width + j];
                }
            }
            Ok(base - score(&shuffled)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::algorithms::ALGORITHMS;
    use crate::ml::dataset::{LabelKind, RawLabels};
    use crate::ml::model::train_with_defaults;
    use crate::ml::preprocess::raw_values;
    use crate::ml::Task;

    fn data(task: Task) -> Dataset {
        let mut records = Vec::new();
        let mut classes = Vec::new();
        let mut values = Vec::new();
        for i in 0..400 {
            let (a, b, noise) = (
                (i % 20) as f64,
                ((i * 7) % 11) as f64,
                ((i * 31) % 13) as f64,
            );
            records.extend([a, b, noise]);
            classes.push(["low", "mid", "high"][((a + b) / 10.0) as usize % 3].to_string());
            values.push(3.0 + 2.0 * a - 0.5 * b);
        }
        let labels = match task {
            Task::Classification => RawLabels::Classes(LabelKind::Text, classes),
            Task::Regression => RawLabels::Values(values),
        };
        Dataset::new(
            vec!["a".into(), "b".into(), "noise".into()],
            records,
            labels,
        )
        .unwrap()
    }

    fn trained(name: &str, task: Task) -> (Dataset, crate::ml::model::Trained) {
        let d = data(task);
        let t = train_with_defaults(&d, name, 1, 2);
        (d, t)
    }

    #[test]
    fn contributions_and_bias_add_up_to_the_prediction_for_every_algorithm() {
        for spec in ALGORITHMS {
            for task in spec.tasks.iter().map(|t| t.task) {
                let (d, t) = trained(spec.name, task);
                let mut x = Vec::new();
                for i in (0..d.n_rows()).step_by(37) {
                    let values: Vec<_> = raw_values(&d, i).collect();
                    t.model.encode(&values, &mut x).unwrap();
                    let e = match t.model.explain(&x) {
                        Ok(e) => e,
                        Err(err) => {
                            assert!(
                                ["gaussian_nb", "adaboost", "knn", "svm"].contains(&spec.name),
                                "{}: {err}",
                                spec.name
                            );
                            continue;
                        }
                    };
                    let total = e.bias + e.contributions.iter().sum::<f64>();
                    let predicted = match (&t.model.estimator, t.model.predict_class(&x)) {
                        (_, None) => t.model.predict_value(&x),
                        (Estimator::Tree(_) | Estimator::Forest(_), Some(k)) => {
                            t.model.predict_proba(&x).unwrap()[k]
                        }
                        (Estimator::Gbm(g), Some(_)) if g.init.len() == 1 => g.scores(&x)[0],
                        (Estimator::Gbm(g), Some(k)) => g.scores(&x)[k],
                        (Estimator::HistGbm(g), Some(_)) if g.init.len() == 1 => g.scores(&x)[0],
                        (Estimator::HistGbm(g), Some(k)) => g.scores(&x)[k],
                        (Estimator::Softmax(m), Some(k)) => {
                            let f = x.len();
                            m.intercepts[k]
                                + m.weights[k * f..(k + 1) * f]
                                    .iter()
                                    .zip(&x)
                                    .map(|(w, v)| w * v)
                                    .sum::<f64>()
                        }
                        (other, _) => panic!("{other:?}"),
                    };
                    assert!(
                        (total - predicted).abs() < 1e-9 * (1.0 + predicted.abs()),
                        "{} {task:?} row {i}: {total} vs {predicted} ({})",
                        spec.name,
                        e.explains
                    );
                }
            }
        }
    }

    #[test]
    fn boosted_trees_credit_the_columns_that_matter() {
        // Binary log loss: every node's value is a Newton step, so a path's
        // last split does not take the leaf's whole correction. One label in
        // eleven is flipped, so the trees grow past the first split.
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..600 {
            let (a, noise) = ((i % 40) as f64, ((i * 7919) % 13) as f64);
            records.extend([a, noise]);
            labels.push(((a > 20.0) ^ (i % 11 == 0)).to_string());
        }
        let d = Dataset::new(
            vec!["a".into(), "noise".into()],
            records,
            RawLabels::Classes(LabelKind::Boolean, labels),
        )
        .unwrap();
        let t = train_with_defaults(&d, "gbm", 1, 1);
        let (mut signal, mut noise) = (0.0, 0.0);
        let mut x = Vec::new();
        for i in 0..d.n_rows() {
            let values: Vec<_> = raw_values(&d, i).collect();
            t.model.encode(&values, &mut x).unwrap();
            let e = t.model.explain(&x).unwrap();
            signal += e.contributions[0].abs();
            noise += e.contributions[1].abs();
        }
        // The trees do split on noise to fit the flipped labels, so it gets
        // some credit (15 % here); with only the leaves set to Newton steps,
        // the last split on each path took the whole correction (77 %).
        assert!(
            noise < 0.3 * signal,
            "noise {noise} against signal {signal}"
        );
    }

    #[test]
    fn the_noise_column_matters_least() {
        for (name, task) in [
            ("gbm", Task::Regression),
            ("random_forest", Task::Classification),
            ("ridge", Task::Regression),
        ] {
            let (d, t) = trained(name, task);
            let (_, native) = t.model.native_importances().unwrap();
            assert!(native[2].abs() < native[0].abs(), "{name}: {native:?}");
            let encoded = t.model.inputs.transform(&d, &Interrupts::none()).unwrap();
            let perm = permutation_importance(
                &t.model,
                &encoded,
                &crate::ml::model::test_split(&d, 1).test,
                1,
                2,
                &Interrupts::none(),
            )
            .unwrap();
            assert!(perm[0] > 0.1 && perm[2].abs() < 0.05, "{name}: {perm:?}");
        }
    }
}
