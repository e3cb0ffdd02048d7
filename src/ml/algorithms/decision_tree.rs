//! `decision_tree`: one CART tree (see `tree.rs` for the learner), for
//! classification and regression, with scikit-learn's parameters and
//! defaults.

use super::tree::{self, Criterion, Presorted, TreeSettings};
use super::{AlgorithmSpec, Estimator, InputStyle, Shape, TaskParams, TrainingData, TreeTargets};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlResult, Task};

pub(super) const MAX_DEPTH: ParamSpec = ParamSpec {
    name: "max_depth",
    kind: ParamKind::Integer {
        min: 1,
        max: 1000,
        nullable: true,
    },
    default: "null",
};
pub(super) const MIN_SAMPLES_SPLIT: ParamSpec = ParamSpec {
    name: "min_samples_split",
    kind: ParamKind::Integer {
        min: 2,
        max: i32::MAX as i64,
        nullable: false,
    },
    default: "2",
};
pub(super) const MIN_SAMPLES_LEAF: ParamSpec = ParamSpec {
    name: "min_samples_leaf",
    kind: ParamKind::Integer {
        min: 1,
        max: i32::MAX as i64,
        nullable: false,
    },
    default: "1",
};
pub(super) const MIN_IMPURITY_DECREASE: ParamSpec = ParamSpec {
    name: "min_impurity_decrease",
    kind: ParamKind::Float {
        min: 0.0,
        max: 1.0,
        nullable: false,
    },
    default: "0.0",
};
pub(super) const CLASSIFICATION_CRITERION: ParamSpec = ParamSpec {
    name: "criterion",
    kind: ParamKind::Choice(&["gini", "entropy"]),
    default: "\"gini\"",
};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "decision_tree",
    description: "one CART tree (scikit-learn's DecisionTree*)",
    // scikit-learn's names and defaults, which most users know.
    tasks: &[
        TaskParams {
            task: Task::Classification,
            params: &[
                MAX_DEPTH,
                MIN_SAMPLES_SPLIT,
                MIN_SAMPLES_LEAF,
                MIN_IMPURITY_DECREASE,
                CLASSIFICATION_CRITERION,
            ],
        },
        TaskParams {
            task: Task::Regression,
            params: &[
                MAX_DEPTH,
                MIN_SAMPLES_SPLIT,
                MIN_SAMPLES_LEAF,
                MIN_IMPURITY_DECREASE,
            ],
        },
    ],
    inputs: InputStyle::Plain,
    fit,
    estimated_bytes,
};

/// The tree settings the shared tree parameters give; `max_features` is
/// left to the caller.
pub(super) fn settings(params: &Hyperparams) -> TreeSettings {
    TreeSettings {
        max_depth: params
            .integer("max_depth")
            .map_or(usize::MAX, |d| d as usize),
        min_samples_split: params.integer("min_samples_split").unwrap_or(2) as usize,
        min_samples_leaf: params.integer("min_samples_leaf").unwrap_or(1) as usize,
        min_impurity_decrease: params.float("min_impurity_decrease").unwrap_or(0.0),
        criterion: match params.text("criterion") {
            Some("entropy") => Criterion::Entropy,
            Some("gini") => Criterion::Gini,
            _ => Criterion::SquaredError,
        },
        max_features: None,
    }
}

/// The presorted columns, one tree's working memory, and the class indices
/// (classification) or targets; the nodes are taken from the memory budget
/// as they grow.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    Presorted::bytes(shape.rows, shape.features)
        + TreeSettings::working_bytes(rows, shape.features)
        + rows * 16
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let presorted = Presorted::new(data)?;
    let targets = TreeTargets::of(data);
    let tree = tree::grow(
        &presorted,
        &targets.borrowed(),
        None,
        &settings(data.params),
        data.seed,
        data.memory,
        data.interrupts,
    )?;
    Ok(Estimator::Tree(tree))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::algorithms::tree::{Node, Tree};
    use crate::ml::algorithms::Predictor;
    use crate::ml::dataset::{Dataset, LabelKind, RawLabels};
    use crate::ml::{Interrupts, MlError};

    fn blobs(n: usize) -> Dataset {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % 3;
            let jitter = ((i * 37) % 17) as f64 / 17.0;
            records.extend([c as f64 * 2.0 + jitter, (i % 5) as f64 + jitter * c as f64]);
            labels.push(["a", "b", "c"][c].to_string());
        }
        Dataset::new(
            vec!["x".into(), "y".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap()
    }

    fn train_with(
        d: &Dataset,
        params: serde_json::Value,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Tree> {
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let specs = SPEC.params(d.task()).unwrap();
        let params = Hyperparams::validate("decision_tree", specs, &params).unwrap();
        match fit(&TrainingData {
            dataset: d,
            rows: &rows,
            params: &params,
            seed: 42,
            threads: 1,
            memory: &crate::ml::MemoryBudget::unlimited(),
            interrupts,
        })? {
            Estimator::Tree(t) => Ok(t),
            other => panic!("{other:?}"),
        }
    }

    fn train(d: &Dataset, params: serde_json::Value) -> Tree {
        train_with(d, params, &Interrupts::none()).unwrap()
    }

    /// XOR of two thresholds plus a noise column.
    fn xor(n: usize) -> Dataset {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let a = ((i * 7919) % 1000) as f64 / 1000.0;
            let b = ((i * 104_729) % 997) as f64 / 997.0;
            let noise = ((i * 31) % 101) as f64;
            records.extend([noise, a, b]);
            labels.push(((a < 0.3) ^ (b < 0.6)).to_string());
        }
        Dataset::new(
            vec!["noise".into(), "a".into(), "b".into()],
            records,
            RawLabels::Classes(LabelKind::Boolean, labels),
        )
        .unwrap()
    }

    /// Labels that no feature explains, so an unbounded tree grows deep.
    fn noisy(n: usize) -> Dataset {
        let records = (0..n)
            .flat_map(|i| [((i * 37) % 101) as f64, ((i * 53) % 89) as f64])
            .collect();
        let labels = (0..n)
            .map(|i| ["a", "b", "c"][((i * 7919) % 13) % 3].to_string())
            .collect();
        Dataset::new(
            vec!["x".into(), "y".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap()
    }

    fn errors(tree: &Tree, d: &Dataset) -> usize {
        (0..d.n_rows())
            .filter(|&i| tree.predict(d.row(i)) != d.label_value(i))
            .count()
    }

    #[test]
    fn finds_a_clean_threshold_exactly_with_either_criterion() {
        for criterion in ["gini", "entropy"] {
            // label = a < 0.3, beside a noise column: one split, midway
            // between 0.299 and 0.3, and no error.
            let n = 2000;
            let records = (0..n)
                .flat_map(|i| [((i * 31) % 101) as f64, ((i * 7919) % 1000) as f64 / 1000.0])
                .collect();
            let labels = (0..n)
                .map(|i| (((i * 7919) % 1000) < 300).to_string())
                .collect();
            let d = Dataset::new(
                vec!["noise".into(), "a".into()],
                records,
                RawLabels::Classes(LabelKind::Boolean, labels),
            )
            .unwrap();
            let tree = train(&d, serde_json::json!({"criterion": criterion}));
            assert_eq!(errors(&tree, &d), 0, "{criterion}");
            match tree.nodes[0] {
                Node::Split {
                    feature, threshold, ..
                } => {
                    assert_eq!(feature, 1, "{criterion}");
                    assert!(
                        (threshold - 0.2995).abs() < 1e-12,
                        "{criterion}: {threshold}"
                    );
                }
                leaf => panic!("{criterion}: {leaf:?}"),
            }
            assert_eq!(tree.nodes.len(), 3, "{criterion}: one split, two leaves");
        }
    }

    #[test]
    fn xor_takes_two_levels_on_the_right_features() {
        for criterion in ["gini", "entropy"] {
            let d = xor(2000);
            let tree = train(
                &d,
                serde_json::json!({"max_depth": 2, "criterion": criterion}),
            );
            // A greedy first cut on XOR need not sit exactly on the boundary
            // (the children are not pure), so allow a sliver of errors.
            assert!(errors(&tree, &d) <= 20, "{criterion}: {:?}", tree.nodes);
            for node in &tree.nodes {
                if let Node::Split { feature, .. } = *node {
                    assert_ne!(feature, 0, "{criterion}: split on the noise column");
                }
            }
        }
    }

    #[test]
    fn fits_the_training_data_when_unbounded() {
        // Unbounded trees are pure on distinct points, as scikit-learn's are.
        let d = blobs(300);
        let tree = train(&d, serde_json::json!({}));
        tree.validate(2, 3).unwrap();
        let (_, index) = match &d.labels {
            crate::ml::dataset::Labels::Classes { encoding, index } => (encoding, index),
            _ => unreachable!(),
        };
        let wrong = (0..d.n_rows())
            .filter(|&i| tree.predict(d.row(i)) as usize != index[i])
            .count();
        // Rows with identical features but different labels cannot be told apart.
        let mut seen = std::collections::HashMap::new();
        let mut clashes = 0;
        for i in 0..d.n_rows() {
            let key: Vec<u64> = d.row(i).iter().map(|v| v.to_bits()).collect();
            if let Some(&j) = seen.get(&key) {
                if index[j] != index[i] {
                    clashes += 1;
                }
            } else {
                seen.insert(key, i);
            }
        }
        assert!(wrong <= clashes, "{wrong} wrong, {clashes} clashes");
    }

    #[test]
    fn respects_depth_and_leaf_size() {
        let d = noisy(500);
        let depth_of = |t: &Tree| {
            let mut depth = vec![0usize; t.nodes.len()];
            let mut max = 0;
            for (i, n) in t.nodes.iter().enumerate() {
                if let Node::Split { left, right, .. } = *n {
                    depth[left as usize] = depth[i] + 1;
                    depth[right as usize] = depth[i] + 1;
                    max = max.max(depth[i] + 1);
                }
            }
            max
        };
        assert_eq!(depth_of(&train(&d, serde_json::json!({"max_depth": 3}))), 3);
        let big_leaves = train(&d, serde_json::json!({"min_samples_leaf": 40}));
        let mut reached = vec![0; big_leaves.nodes.len()];
        for i in 0..d.n_rows() {
            reached[big_leaves.leaf_of(d.row(i))] += 1;
        }
        for (node, n) in big_leaves.nodes.iter().zip(reached) {
            if let Node::Leaf { .. } = node {
                assert!(n >= 40, "a leaf holds {n} rows");
            }
        }
    }

    #[test]
    fn probabilities_are_the_leaf_class_fractions() {
        let d = blobs(300);
        let tree = train(&d, serde_json::json!({"max_depth": 1}));
        // The root's fractions are the classes' shares of all rows.
        assert_eq!(tree.value(0), &[100.0 / 300.0; 3]);
        for i in 0..d.n_rows() {
            let p = tree.predict_proba(d.row(i)).unwrap();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let argmax = p
                .iter()
                .enumerate()
                .fold(0, |best, (k, &v)| if v > p[best] { k } else { best });
            assert_eq!(argmax as f64, tree.predict(d.row(i)));
        }
        // A depth-1 tree cannot separate three classes: some leaf is mixed.
        assert!((0..d.n_rows()).any(|i| {
            tree.predict_proba(d.row(i))
                .unwrap()
                .iter()
                .all(|&v| v < 1.0)
        }));
    }

    #[test]
    fn training_is_deterministic() {
        let d = blobs(500);
        for _ in 0..5 {
            assert_eq!(
                train(&d, serde_json::json!({"max_depth": 3})),
                train(&d, serde_json::json!({"max_depth": 3}))
            );
        }
    }

    #[test]
    fn an_interrupt_stops_the_fit() {
        let d = noisy(2000);
        let calls = std::cell::Cell::new(0);
        let stop_after_ten = || {
            calls.set(calls.get() + 1);
            if calls.get() > 10 {
                Err(MlError::invalid("canceled"))
            } else {
                Ok(())
            }
        };
        let err =
            train_with(&d, serde_json::json!({}), &Interrupts::new(&stop_after_ten)).unwrap_err();
        assert_eq!(err.message, "canceled");
        assert_eq!(calls.get(), 11);
    }

    #[test]
    fn deep_trees_do_not_recurse() {
        // One feature whose classes alternate: every split peels one row,
        // so the tree is as deep as the data is long.
        let n = 20_000;
        let d = Dataset::new(
            vec!["x".into()],
            (0..n).map(|i| i as f64).collect(),
            RawLabels::Classes(
                LabelKind::Text,
                (0..n)
                    .map(|i| ["a", "b"][(i / 2) % 2].to_string())
                    .collect(),
            ),
        )
        .unwrap();
        let tree = train(&d, serde_json::json!({}));
        tree.validate(1, 2).unwrap();
        assert!(tree.nodes.len() >= n / 2);
    }

    #[test]
    fn validate_catches_cycles() {
        let d = blobs(60);
        let mut tree = train(&d, serde_json::json!({}));
        if let Node::Split { left, .. } = &mut tree.nodes[0] {
            *left = 0;
        }
        assert!(tree.validate(2, 3).is_err());
    }
}
