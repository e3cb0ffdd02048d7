//! `random_forest`: bagged CART trees with features drawn per node
//! (scikit-learn's RandomForest*), grown by our tree learner on several
//! threads. linfa-ensemble's forests are built on linfa-trees, whose fit
//! grows with rows × nodes (see `tree.rs`), and it has no regression forest.
//!
//! The columns are sorted once and shared by every tree; each tree sees a
//! bootstrap sample as integer row weights, as scikit-learn's does, and
//! draws with a seed of its own, so the forest does not depend on which
//! thread grew which tree.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::decision_tree::{
    self, CLASSIFICATION_CRITERION, MAX_DEPTH, MIN_IMPURITY_DECREASE, MIN_SAMPLES_LEAF,
    MIN_SAMPLES_SPLIT,
};
use super::tree::{self, Presorted, Tree, TreeSettings};
use super::{
    unit_seed, AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData,
    TreeTargets,
};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{parallel, MlError, MlResult, Task};

const N_ESTIMATORS: ParamSpec = ParamSpec {
    name: "n_estimators",
    kind: ParamKind::Integer {
        min: 1,
        max: 10_000,
        nullable: false,
    },
    default: "100",
};
const BOOTSTRAP: ParamSpec = ParamSpec {
    name: "bootstrap",
    kind: ParamKind::Boolean,
    default: "true",
};
/// scikit-learn's defaults: √F features per node for classification, all
/// of them for regression.
const CLASSIFICATION_MAX_FEATURES: ParamSpec = ParamSpec {
    name: "max_features",
    kind: ParamKind::Choice(&["sqrt", "log2", "all"]),
    default: "\"sqrt\"",
};
const REGRESSION_MAX_FEATURES: ParamSpec = ParamSpec {
    name: "max_features",
    kind: ParamKind::Choice(&["sqrt", "log2", "all"]),
    default: "\"all\"",
};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "random_forest",
    description: "bagged CART trees, features drawn per node (scikit-learn's RandomForest*)",
    tasks: &[
        TaskParams {
            task: Task::Classification,
            params: &[
                N_ESTIMATORS,
                MAX_DEPTH,
                MIN_SAMPLES_SPLIT,
                MIN_SAMPLES_LEAF,
                MIN_IMPURITY_DECREASE,
                CLASSIFICATION_MAX_FEATURES,
                BOOTSTRAP,
                CLASSIFICATION_CRITERION,
            ],
        },
        TaskParams {
            task: Task::Regression,
            params: &[
                N_ESTIMATORS,
                MAX_DEPTH,
                MIN_SAMPLES_SPLIT,
                MIN_SAMPLES_LEAF,
                MIN_IMPURITY_DECREASE,
                REGRESSION_MAX_FEATURES,
                BOOTSTRAP,
            ],
        },
    ],
    inputs: InputStyle::Plain,
    fit,
    estimated_bytes,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub trees: Vec<Tree>,
}

impl Forest {
    pub fn validate(&self, n_features: usize, n_outputs: usize) -> MlResult<()> {
        if self.trees.is_empty() {
            return Err(MlError::corrupt("forest artifact: no trees"));
        }
        self.trees
            .iter()
            .try_for_each(|t| t.validate(n_features, n_outputs))
    }

    /// The mean of the trees' leaf values: class fractions, or estimates.
    fn mean_value(&self, x: &[f64]) -> Vec<f64> {
        let k = self.trees[0].n_outputs as usize;
        let mut sum = vec![0.0; k];
        tree::leaves_of(&self.trees, x, |_, tree, leaf| {
            for (s, v) in sum.iter_mut().zip(tree.value(leaf)) {
                *s += v;
            }
        });
        let n = self.trees.len() as f64;
        sum.iter_mut().for_each(|s| *s /= n);
        sum
    }
}

impl Predictor for Forest {
    fn predict(&self, x: &[f64]) -> f64 {
        let mean = self.mean_value(x);
        if mean.len() == 1 {
            return mean[0];
        }
        mean.iter()
            .enumerate()
            .fold(0, |best, (k, &p)| if p > mean[best] { k } else { best }) as f64
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        (self.trees[0].n_outputs > 1).then(|| self.mean_value(x))
    }
}

fn max_features(params: &Hyperparams, features: usize) -> usize {
    let f = features as f64;
    match params.text("max_features") {
        Some("sqrt") => f.sqrt() as usize,
        Some("log2") => f.log2() as usize,
        _ => features,
    }
    .clamp(1, features.max(1))
}

/// The shared presorted columns, and each thread's growing tree with its
/// bootstrap weights; every tree's nodes are taken from the memory budget
/// as they grow.
fn estimated_bytes(shape: &Shape, params: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    let n_trees = params.integer("n_estimators").unwrap_or(100) as u64;
    let threads = shape.threads.clamp(1, n_trees as usize) as u64;
    Presorted::bytes(shape.rows, shape.features)
        + rows * 16
        + threads * (TreeSettings::working_bytes(rows, shape.features) + rows * 8)
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let presorted = Presorted::new(data)?;
    let targets = TreeTargets::of(data);
    let mut settings = decision_tree::settings(data.params);
    settings.max_features = Some(max_features(data.params, presorted.n_features()));
    let n_trees = data.params.integer("n_estimators").unwrap_or(100) as usize;
    let bootstrap = data.params.boolean("bootstrap").unwrap_or(true);
    let n = presorted.n_rows();
    let forest_seed = data.seed;
    let memory = data.memory;
    let trees = parallel::run(n_trees, data.threads, data.interrupts, |i, interrupts| {
        let seed = unit_seed(forest_seed, i);
        let weights = bootstrap.then(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut counts = vec![0.0; n];
            for _ in 0..n {
                counts[rng.gen_range(0..n)] += 1.0;
            }
            counts
        });
        tree::grow(
            &presorted,
            &targets.borrowed(),
            weights.as_deref(),
            &settings,
            seed.rotate_left(17),
            memory,
            interrupts,
        )
    })?;
    Ok(Estimator::Forest(Forest { trees }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{Dataset, LabelKind, RawLabels};
    use crate::ml::Interrupts;

    fn fit_with(d: &Dataset, params: serde_json::Value, threads: usize) -> Forest {
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params =
            Hyperparams::validate("random_forest", SPEC.params(d.task()).unwrap(), &params)
                .unwrap();
        match fit(&TrainingData {
            dataset: d,
            rows: &rows,
            params: &params,
            seed: 7,
            threads,
            memory: &crate::ml::MemoryBudget::unlimited(),
            interrupts: &Interrupts::none(),
        })
        .unwrap()
        {
            Estimator::Forest(f) => f,
            other => panic!("{other:?}"),
        }
    }

    /// y = x0² + noise-free step on x1, with two useless columns.
    fn curve(n: usize) -> Dataset {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let a = ((i * 7919) % 1000) as f64 / 100.0;
            let b = ((i * 104_729) % 997) as f64 / 997.0;
            records.extend([a, b, ((i * 31) % 7) as f64, ((i * 17) % 5) as f64]);
            y.push(a * a + if b < 0.5 { 10.0 } else { 0.0 });
        }
        Dataset::new(
            vec!["a".into(), "b".into(), "c".into(), "d".into()],
            records,
            RawLabels::Values(y),
        )
        .unwrap()
    }

    #[test]
    fn trees_walked_side_by_side_reach_the_leaves_walked_one_by_one() {
        // Seven trees: a group of four and a part group of three.
        let d = curve(500);
        let forest = fit_with(&d, serde_json::json!({"n_estimators": 7}), 2);
        for i in 0..d.n_rows() {
            let mut x = d.row(i).to_vec();
            if i % 3 == 0 {
                x[i % 4] = f64::NAN;
            }
            let mut seen = Vec::new();
            tree::leaves_of(&forest.trees, &x, |k, _, leaf| seen.push((k, leaf)));
            let expected: Vec<(usize, usize)> = forest
                .trees
                .iter()
                .map(|t| t.leaf_of(&x))
                .enumerate()
                .collect();
            assert_eq!(seen, expected, "row {i}");
        }
    }

    #[test]
    fn a_regression_forest_fits_a_curve_and_knows_which_features_matter() {
        let d = curve(2000);
        let forest = fit_with(&d, serde_json::json!({"n_estimators": 20}), 2);
        let truth: Vec<f64> = (0..d.n_rows()).map(|i| d.label_value(i)).collect();
        let predicted: Vec<f64> = (0..d.n_rows()).map(|i| forest.predict(d.row(i))).collect();
        let r2 = crate::ml::metrics::regression(&truth, &predicted)["r2"];
        assert!(r2 > 0.99, "r2 {r2}");
        let mut importance = [0.0; 4];
        for t in &forest.trees {
            for (sum, v) in importance.iter_mut().zip(&t.importances) {
                *sum += v;
            }
        }
        assert!(importance[0] > importance[2] * 10.0 && importance[1] > importance[3] * 10.0);
    }

    #[test]
    fn the_same_seed_gives_the_same_forest_whatever_the_threads() {
        let d = curve(500);
        let one = fit_with(&d, serde_json::json!({"n_estimators": 8}), 1);
        let three = fit_with(&d, serde_json::json!({"n_estimators": 8}), 3);
        assert_eq!(one, three);
        // And the trees differ from one another: each has its own sample.
        assert_ne!(one.trees[0], one.trees[1]);
    }

    #[test]
    fn a_forest_that_outgrows_its_memory_stops_with_an_error() {
        let d = curve(2000);
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params = Hyperparams::validate(
            "random_forest",
            SPEC.params(d.task()).unwrap(),
            &serde_json::json!({}),
        )
        .unwrap();
        let err = fit(&TrainingData {
            dataset: &d,
            rows: &rows,
            params: &params,
            seed: 7,
            threads: 2,
            memory: &crate::ml::MemoryBudget::new(100_000),
            interrupts: &Interrupts::none(),
        })
        .unwrap_err();
        assert_eq!(err.kind, crate::ml::MlErrorKind::OutOfMemory);
    }

    #[test]
    fn classification_averages_class_fractions() {
        let n = 600;
        let records = (0..n)
            .flat_map(|i| {
                [
                    (i % 3) as f64 + ((i * 37) % 11) as f64 / 20.0,
                    (i % 7) as f64,
                ]
            })
            .collect();
        let labels = (0..n).map(|i| ["a", "b", "c"][i % 3].to_string()).collect();
        let d = Dataset::new(
            vec!["x".into(), "y".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap();
        let forest = fit_with(&d, serde_json::json!({"n_estimators": 10}), 2);
        for i in 0..d.n_rows() {
            let p = forest.predict_proba(d.row(i)).unwrap();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert_eq!(forest.predict(d.row(i)), d.label_value(i));
        }
    }
}
