//! CART classification tree: linfa-trees fits it, then we flatten it into an
//! array and route the training rows through it once to record each leaf's
//! class counts, which linfa does not keep and `predict_proba` needs.

use linfa::prelude::*;
use linfa_trees::{DecisionTree, SplitQuality, TreeNode};
use serde::{Deserialize, Serialize};

use super::{AlgorithmSpec, Estimator, Predictor, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "decision_tree",
    task: Task::Classification,
    // scikit-learn's names, which most users know; mapped onto linfa's below.
    params: &[
        ParamSpec {
            name: "max_depth",
            kind: ParamKind::Integer {
                min: 1,
                max: 1000,
                nullable: true,
            },
            default: "null",
        },
        ParamSpec {
            name: "min_samples_split",
            kind: ParamKind::Integer {
                min: 2,
                max: i32::MAX as i64,
                nullable: false,
            },
            default: "2",
        },
        ParamSpec {
            name: "min_samples_leaf",
            kind: ParamKind::Integer {
                min: 1,
                max: i32::MAX as i64,
                nullable: false,
            },
            default: "1",
        },
        ParamSpec {
            name: "min_impurity_decrease",
            kind: ParamKind::Float {
                min: 1e-12,
                max: 1.0,
            },
            default: "0.00001",
        },
        ParamSpec {
            name: "criterion",
            kind: ParamKind::Choice(&["gini", "entropy"]),
            default: "\"gini\"",
        },
    ],
    fit,
};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Node {
    /// Rows with `x[feature] < threshold` go left (linfa's predict rule).
    Split {
        feature: u32,
        threshold: f64,
        left: u32,
        right: u32,
    },
    Leaf {
        class: u32,
        leaf: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationTree {
    pub n_features: u32,
    pub n_classes: u32,
    /// Pre-order: every child sits after its parent, so a walk always ends.
    pub nodes: Vec<Node>,
    /// `n_classes` training-row counts per leaf, leaf after leaf.
    pub leaf_counts: Vec<u32>,
}

fn fit(data: &TrainingData<'_>, params: &Hyperparams) -> MlResult<Estimator> {
    let (targets, n_classes) = data
        .class_indices()
        .ok_or_else(|| MlError::invalid("decision_tree needs class labels"))?;
    // linfa breaks ties between equally weighted classes in hash-map order,
    // which changes from run to run. Weighing class k by 1 + (K-1-k)·2⁻²⁰
    // leaves the splits as good as unchanged but means no two classes tie
    // and the lower class wins, so the same data always gives the same tree.
    let weights = targets
        .iter()
        .map(|&k| 1.0 + (n_classes - 1 - k) as f32 * (1.0 / (1u32 << 20) as f32))
        .collect();
    let dataset = linfa::Dataset::new(data.records(), targets.clone()).with_weights(weights);
    let criterion = match params.text("criterion") {
        Some("entropy") => SplitQuality::Entropy,
        _ => SplitQuality::Gini,
    };
    let tree = DecisionTree::params()
        .split_quality(criterion)
        .max_depth(params.integer("max_depth").map(|d| d as usize))
        .min_weight_split(params.integer("min_samples_split").unwrap_or(2) as f32)
        .min_weight_leaf(params.integer("min_samples_leaf").unwrap_or(1) as f32)
        .min_impurity_decrease(params.float("min_impurity_decrease").unwrap_or(1e-5))
        .fit(&dataset)
        .map_err(|e| MlError::invalid(format!("decision tree could not be fitted: {e}")))?;

    let mut model = ClassificationTree {
        n_features: data.dataset.width() as u32,
        n_classes: n_classes as u32,
        nodes: Vec::new(),
        leaf_counts: Vec::new(),
    };
    model.push_subtree(tree.root_node());
    model.count_leaves(data, targets.as_slice().unwrap_or(&[]));
    Ok(Estimator::DecisionTree(model))
}

impl ClassificationTree {
    fn push_subtree(&mut self, node: &TreeNode<f64, usize>) -> u32 {
        let at = self.nodes.len() as u32;
        let children = node.children();
        match (node.prediction(), children[0], children[1]) {
            (None, Some(left), Some(right)) => {
                let (feature, threshold, _) = node.split();
                self.nodes.push(Node::Split {
                    feature: feature as u32,
                    threshold,
                    left: 0,
                    right: 0,
                });
                let left_at = self.push_subtree(left);
                let right_at = self.push_subtree(right);
                self.nodes[at as usize] = Node::Split {
                    feature: feature as u32,
                    threshold,
                    left: left_at,
                    right: right_at,
                };
            }
            (prediction, _, _) => {
                let leaf = (self.leaf_counts.len() / self.n_classes as usize) as u32;
                self.leaf_counts
                    .extend(std::iter::repeat_n(0, self.n_classes as usize));
                self.nodes.push(Node::Leaf {
                    class: prediction.unwrap_or(0) as u32,
                    leaf,
                });
            }
        }
        at
    }

    /// Routes every training row to its leaf, then sets each leaf's class to
    /// its most frequent one (the lower class on a tie).
    fn count_leaves(&mut self, data: &TrainingData<'_>, targets: &[usize]) {
        let k = self.n_classes as usize;
        for (&row, &class) in data.rows.iter().zip(targets) {
            let leaf = self.leaf_of(data.dataset.row(row));
            self.leaf_counts[leaf * k + class] += 1;
        }
        for node in &mut self.nodes {
            if let Node::Leaf { class, leaf } = node {
                let counts = &self.leaf_counts[*leaf as usize * k..(*leaf as usize + 1) * k];
                if counts.iter().any(|&c| c > 0) {
                    let best = counts.iter().max().copied().unwrap_or(0);
                    *class = counts.iter().position(|&c| c == best).unwrap_or(0) as u32;
                }
            }
        }
    }

    fn leaf_node(&self, x: &[f64]) -> (u32, u32) {
        let mut at = 0usize;
        loop {
            match self.nodes[at] {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    at = if x[feature as usize] < threshold {
                        left as usize
                    } else {
                        right as usize
                    };
                }
                Node::Leaf { class, leaf } => return (class, leaf),
            }
        }
    }

    fn leaf_of(&self, x: &[f64]) -> usize {
        self.leaf_node(x).1 as usize
    }

    /// Checks what the walk relies on, so damaged bytes that still decode
    /// cannot index out of bounds or loop.
    pub fn validate(&self) -> MlResult<()> {
        let k = self.n_classes as usize;
        let n_leaves = self.leaf_counts.len().checked_div(k).unwrap_or(0);
        let bad = |what: &str| Err(MlError::corrupt(format!("decision tree artifact: {what}")));
        if self.nodes.is_empty() || k == 0 || self.leaf_counts.len() != n_leaves * k {
            return bad("empty or misshapen");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            match *node {
                Node::Split {
                    feature,
                    left,
                    right,
                    ..
                } => {
                    let in_order = |c: u32| (c as usize) > i && (c as usize) < self.nodes.len();
                    if feature >= self.n_features || !in_order(left) || !in_order(right) {
                        return bad("a split points outside the tree");
                    }
                }
                Node::Leaf { class, leaf } => {
                    if class >= self.n_classes || leaf as usize >= n_leaves {
                        return bad("a leaf points outside the tree");
                    }
                }
            }
        }
        Ok(())
    }
}

impl Predictor for ClassificationTree {
    fn predict(&self, x: &[f64]) -> f64 {
        self.leaf_node(x).0 as f64
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        let k = self.n_classes as usize;
        let (class, leaf) = self.leaf_node(x);
        let counts = &self.leaf_counts[leaf as usize * k..(leaf as usize + 1) * k];
        let total: u32 = counts.iter().sum();
        Some(if total == 0 {
            // A leaf no training row reached: all weight on its class.
            (0..k).map(|c| f64::from(c as u32 == class)).collect()
        } else {
            counts
                .iter()
                .map(|&c| f64::from(c) / f64::from(total))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{Dataset, LabelKind, RawLabels};
    use ndarray::Array2;

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

    fn train(d: &Dataset, params: serde_json::Value) -> ClassificationTree {
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params = Hyperparams::validate("decision_tree", SPEC.params, &params).unwrap();
        match fit(
            &TrainingData {
                dataset: d,
                rows: &rows,
            },
            &params,
        )
        .unwrap()
        {
            Estimator::DecisionTree(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flat_tree_predicts_like_linfa() {
        let d = blobs(300);
        let tree = train(&d, serde_json::json!({}));
        tree.validate().unwrap();
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let td = TrainingData {
            dataset: &d,
            rows: &rows,
        };
        let (targets, _) = td.class_indices().unwrap();
        let linfa_tree = DecisionTree::params()
            .fit(&linfa::Dataset::new(td.records(), targets))
            .unwrap();
        let probe = Array2::from_shape_fn((200, 2), |(i, j)| ((i * 13 + j * 7) % 61) as f64 / 10.0);
        let expected = linfa_tree.predict(&probe);
        for (i, row) in probe.rows().into_iter().enumerate() {
            assert_eq!(tree.predict(row.as_slice().unwrap()) as usize, expected[i]);
        }
    }

    #[test]
    fn probabilities_come_from_leaf_counts() {
        let d = blobs(300);
        let tree = train(&d, serde_json::json!({"max_depth": 1}));
        let total: u32 = tree.leaf_counts.iter().sum();
        assert_eq!(total, 300);
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
        assert!(
            d.row(0).len() == 2
                && (0..d.n_rows()).any(|i| {
                    tree.predict_proba(d.row(i))
                        .unwrap()
                        .iter()
                        .all(|&v| v < 1.0)
                })
        );
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
    fn validate_catches_cycles() {
        let d = blobs(60);
        let mut tree = train(&d, serde_json::json!({}));
        if let Node::Split { left, .. } = &mut tree.nodes[0] {
            *left = 0;
        }
        assert!(tree.validate().is_err());
    }
}
