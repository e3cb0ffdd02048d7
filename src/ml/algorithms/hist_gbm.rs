//! `hist_gbm`: histogram gradient boosting, the method of LightGBM and
//! scikit-learn's `HistGradientBoosting*`, and the default learner.
//!
//! - Each feature is cut once per fit into at most `max_bins` (255) bins at
//!   quantiles of a sample of 200,000 rows (every distinct value gets its own
//!   bin when there are fewer); missing values (NaN) have a bin of their own.
//!   A text or enum column, encoded `ordinal` (its default here), is a
//!   categorical feature: one bin per category, and its splits send a set
//!   of categories left (LightGBM's order by gradient ratio, as
//!   scikit-learn's `categorical_features`). The binned rows are one byte a
//!   cell, feature after feature.
//! - Trees grow leaf-wise, the leaf with the best gain first, up to
//!   `max_leaf_nodes`, from per-node histograms of gradient and hessian
//!   sums; a node's larger child gets its histogram by subtraction (parent −
//!   smaller child). Leaves are Newton steps, −G/(H + λ), times the
//!   learning rate; absolute error replaces them with the median residual.
//! - Early stopping on a validation fraction (10 %), on by default above
//!   10,000 rows, with scikit-learn's rule (no gain above `tol` in the last
//!   `n_iter_no_change` iterations).
//! - Threads build a node's histograms feature by feature, each feature's
//!   sums in one thread in row order, so 1 and N threads give the same
//!   bytes. Every node asks the interrupt hook.
//!
//! Why our own: forust-ml 0.8 (and perpetual, its successor) have no
//! interrupt hook and no multiclass, and neither has categorical splits
//! from bins; see docs/algorithms.md.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::logistic_regression::{argmax, boosted_proba, boosted_shape_fits, sigmoid};
use super::{AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::dataset::{ColumnKind, Labels};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{parallel, Interrupts, MemoryBudget, MlError, MlResult, Task};

/// Bins per feature in a histogram: up to 255 for values, and the last
/// for missing ones.
const BINS: usize = 256;
const MISSING: u8 = 255;
/// Rows the bin edges are computed from, at most (scikit-learn's
/// `subsample` of its bin mapper).
const BIN_SAMPLE: usize = 200_000;
/// A category with fewer rows in a node is left out of its split search
/// (and goes right); the same number smooths the gradient ratio the
/// categories are ordered by. LightGBM's and scikit-learn's constants.
const MIN_CATEGORY_SUPPORT: u32 = 10;
const MAX_CATEGORIES_LEFT: usize = 32;
/// A child whose hessian sum is below this is not made (scikit-learn's
/// `min_hessian_to_split`).
const MIN_HESSIAN: f64 = 1e-3;
/// Rows above which early stopping is on unless it is turned off.
const EARLY_STOPPING_ROWS: usize = 10_000;
/// Below this many (rows × features) a node's histograms are built on the
/// calling thread: starting threads would cost more.
const PARALLEL_WORK: usize = 65_536;
/// Features a compiled split can name (a `u16`).
const MAX_FEATURES: usize = 1 << 16;

const fn integer(name: &'static str, min: i64, max: i64, default: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Integer {
            min,
            max,
            nullable: false,
        },
        default,
    }
}

const fn float(name: &'static str, min: f64, max: f64, default: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Float {
            min,
            max,
            nullable: false,
        },
        default,
    }
}

const COMMON: [ParamSpec; 10] = [
    integer("max_iter", 1, 100_000, "100"),
    float("learning_rate", f64::MIN_POSITIVE, 10.0, "0.1"),
    integer("max_leaf_nodes", 2, 65_536, "31"),
    ParamSpec {
        name: "max_depth",
        kind: ParamKind::Integer {
            min: 1,
            max: 256,
            nullable: true,
        },
        default: "null",
    },
    integer("min_samples_leaf", 1, 1_000_000_000, "20"),
    float("l2_regularization", 0.0, 1e12, "0.0"),
    integer("max_bins", 2, 255, "255"),
    ParamSpec {
        name: "early_stopping",
        kind: ParamKind::Choice(&["auto", "on", "off"]),
        default: "\"auto\"",
    },
    float("validation_fraction", 0.01, 0.5, "0.1"),
    integer("n_iter_no_change", 1, 100_000, "10"),
];

const CLASSIFIER: [ParamSpec; 11] = {
    let mut all = [float("tol", 0.0, 1.0, "1e-7"); 11];
    let mut i = 0;
    while i < COMMON.len() {
        all[i] = COMMON[i];
        i += 1;
    }
    all
};

const REGRESSOR: [ParamSpec; 12] = {
    let mut all = [ParamSpec {
        name: "loss",
        kind: ParamKind::Choice(&["squared_error", "absolute_error"]),
        default: "\"squared_error\"",
    }; 12];
    let mut i = 0;
    while i < CLASSIFIER.len() {
        all[i + 1] = CLASSIFIER[i];
        i += 1;
    }
    all
};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "hist_gbm",
    description: "histogram gradient boosting (scikit-learn's HistGradientBoosting*, LightGBM)",
    tasks: &[
        TaskParams {
            task: Task::Classification,
            params: &CLASSIFIER,
        },
        TaskParams {
            task: Task::Regression,
            params: &REGRESSOR,
        },
    ],
    inputs: InputStyle::Native,
    fit,
    estimated_bytes,
};

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistGbm {
    /// Classes of a classifier; 0 for a regressor.
    pub n_classes: u32,
    /// The starting score per output: the estimate (mean or median), the
    /// log-odds of the second class, or each class's log prior.
    pub init: Vec<f64>,
    /// A categorical value at or above this is treated as missing, as it
    /// was when the rows were binned.
    pub max_bins: u32,
    /// Iteration after iteration, one tree per output.
    pub trees: Vec<HistTree>,
    /// Split gain per feature over every tree, summing to 1 (all 0 when no
    /// tree split).
    pub importances: Vec<f64>,
    /// The trees laid out for prediction (`Compiled`), made from `trees`
    /// by `compiled` after a fit or a decode.
    #[serde(skip)]
    compiled: Compiled,
}

/// The trees of a `HistGbm` laid out for prediction. An input is coded
/// once per row into a byte per feature (for a numeric feature, how many
/// of the thresholds its splits use lie below the value: exactly the
/// comparisons the splits make), and every split compares bytes. The
/// splits of all trees are contiguous, 16 bytes each, leaves apart, so a
/// walk reads 144 kB of a 300-tree model, not the 440 kB of its
/// `HistNode`s (which stay, for `explain`). A 300-tree, three-class model
/// predicted 100k rows in 0.59 s here, against 0.72 s walking `HistNode`s.
#[derive(Debug, Clone, Default, PartialEq)]
struct Compiled {
    /// Per feature, sorted and distinct, the thresholds its numeric
    /// splits use; `None` for a categorical feature.
    thresholds: Vec<Option<Vec<f64>>>,
    /// The features any split uses, the only ones coded.
    used: Vec<usize>,
    /// Per tree, where its splits and leaves lie, and its root.
    trees: Vec<CompiledTree>,
    splits: Vec<CompiledSplit>,
    leaves: Vec<f64>,
    category_sets: Vec<[u64; 4]>,
    /// A category index at or above this is missing.
    max_bins: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct CompiledTree {
    splits: std::ops::Range<usize>,
    leaves: std::ops::Range<usize>,
    root: u32,
}

/// A child reference with this bit set is a leaf's index.
const LEAF: u32 = 1 << 31;
/// An operand with this bit set is the index of a category set.
const CATEGORY_SET: u32 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq)]
struct CompiledSplit {
    /// Left, then right: a split's index within its tree, or `LEAF` | a
    /// leaf's index within its tree.
    children: [u32; 2],
    /// A numeric split sends a code at most this left; a categorical one
    /// (`CATEGORY_SET` set) the codes in that set.
    operand: u32,
    feature: u16,
    missing_left: bool,
}

impl CompiledSplit {
    fn goes_left(&self, code: u8, category_sets: &[[u64; 4]]) -> bool {
        let missing = code == MISSING;
        if self.operand & CATEGORY_SET == 0 {
            // A missing code (255) is above every operand (at most 254).
            // `&` and `^`, not branches: the side is data, and a branch on
            // it would be mispredicted half the time.
            return (u32::from(code) <= self.operand) ^ (missing & self.missing_left);
        }
        if missing {
            return self.missing_left;
        }
        let set = &category_sets[(self.operand & !CATEGORY_SET) as usize];
        set[usize::from(code / 64)] >> (code % 64) & 1 == 1
    }
}

/// A node of a fitted tree, laid out for prediction: the children are
/// adjacent, so a node needs no kind tag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistNode {
    /// The feature split on (unused in a leaf).
    pub feature: u32,
    /// The left child; the right one is `left + 1`. 0 in a leaf: the root
    /// is nobody's child.
    pub left: u32,
    /// A numeric split sends `x <= threshold` left; a categorical one the
    /// categories in `HistTree::category_sets[category_set]`.
    pub threshold: f64,
    /// `u32::MAX` for a numeric split.
    pub category_set: u32,
    /// Where a missing value goes, and a category index that is negative
    /// (unseen or folded at preprocessing) or at least `max_bins`.
    pub missing_left: bool,
}

const NUMERIC_SPLIT: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistTree {
    /// Every child sits after its parent, so a walk always ends.
    pub nodes: Vec<HistNode>,
    /// Per node, the step it would take as a leaf (learning rate
    /// included): a leaf's is its prediction, and a path's changes in value
    /// are what `explain` credits to the features split on.
    pub values: Vec<f64>,
    /// 256-bit sets of the categories that go left.
    pub category_sets: Vec<[u64; 4]>,
}

impl HistTree {
    fn goes_left(&self, node: &HistNode, x: f64, max_bins: u32) -> bool {
        if node.category_set == NUMERIC_SPLIT {
            // NaN fails `<=`. `|` and `&`, not `||` and `&&`: the side is
            // data, and a branch on it would be mispredicted half the time.
            return (x <= node.threshold) | (node.missing_left & x.is_nan());
        }
        if x.is_nan() || x < 0.0 || x >= f64::from(max_bins) {
            return node.missing_left;
        }
        let k = x as usize;
        self.category_sets[node.category_set as usize][k / 64] >> (k % 64) & 1 == 1
    }

    /// Calls `visit` with every node `x` passes through, root first, and
    /// the feature each one splits on (none for the leaf).
    pub fn walk(&self, x: &[f64], max_bins: u32, mut visit: impl FnMut(usize, Option<usize>)) {
        let mut at = 0usize;
        loop {
            let node = &self.nodes[at];
            if node.left == 0 {
                visit(at, None);
                return;
            }
            visit(at, Some(node.feature as usize));
            let left = self.goes_left(node, x[node.feature as usize], max_bins);
            at = node.left as usize + usize::from(!left);
        }
    }

    fn validate(&self, n_features: usize) -> MlResult<()> {
        let bad = |what: &str| Err(MlError::corrupt(format!("hist_gbm artifact: {what}")));
        if self.nodes.is_empty() || self.values.len() != self.nodes.len() {
            return bad("a tree is empty or misshapen");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.left == 0 {
                continue;
            }
            let left = node.left as usize;
            if left <= i
                || left + 1 >= self.nodes.len()
                || node.feature as usize >= n_features
                || node.threshold.is_nan()
                || (node.category_set != NUMERIC_SPLIT
                    && node.category_set as usize >= self.category_sets.len())
            {
                return bad("a split points outside the tree");
            }
        }
        Ok(())
    }
}

impl HistGbm {
    fn outputs(&self) -> usize {
        self.init.len()
    }

    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        if !boosted_shape_fits(self.n_classes, self.init.len(), self.trees.len(), n_classes)
            || self.importances.len() != n_features
            || !(2..=255).contains(&self.max_bins)
        {
            return Err(MlError::corrupt("hist_gbm artifact: misshapen"));
        }
        self.trees.iter().try_for_each(|t| t.validate(n_features))?;
        match FeatureCoding::of(&self.trees, n_features).problem {
            Some(problem) => Err(MlError::corrupt(format!("hist_gbm artifact: {problem}"))),
            None => Ok(()),
        }
    }

    /// The raw scores: the estimate, or log-odds per output.
    pub fn scores(&self, x: &[f64]) -> Vec<f64> {
        let k = self.outputs();
        let codes = self.compiled.codes(x);
        (0..k)
            .map(|o| self.init[o] + self.sum_of_trees(o, k, &codes))
            .collect()
    }

    /// Lays the trees out for prediction (`Compiled`), once `validate`
    /// has passed (`Estimator::prepared`, after a fit and after a decode).
    pub fn compiled(mut self) -> Self {
        self.compiled = Compiled::of(&self.trees, self.importances.len(), self.max_bins);
        self
    }

    /// The sum, in tree order, of the values trees `first`, `first + step`,
    /// ... give the row coded as `codes`. A tree's walk is a chain of loads,
    /// each waiting for the one before; walking `LANES` trees side by side
    /// lets the processor overlap their waits (on `HistNode`s, a 100-tree
    /// model predicted 200k rows in 0.39 s with 4 lanes, 0.61 s one tree
    /// after another, 0.50 s with 8, as their state no longer fit the
    /// registers). A walk that took every lane the deepest tree's steps,
    /// with leaves their own children and no branch on which lane has
    /// ended, was slower: 0.83 s against 0.59 s.
    fn sum_of_trees(&self, first: usize, step: usize, codes: &[u8]) -> f64 {
        const LANES: usize = 4;
        let c = &self.compiled;
        // A model not compiled would predict its start alone.
        assert_eq!(
            c.trees.len(),
            self.trees.len(),
            "hist_gbm model not compiled"
        );
        let picked: usize = c.trees.len().saturating_sub(first).div_ceil(step);
        let mut sum = 0.0;
        for group in (0..picked).step_by(LANES) {
            // A lane past the last tree starts at a leaf and adds nothing.
            let mut at = [LEAF; LANES];
            let mut splits: [&[CompiledSplit]; LANES] = [&[]; LANES];
            let mut leaves: [&[f64]; LANES] = [&[]; LANES];
            for lane in 0..LANES.min(picked - group) {
                let tree = &c.trees[first + (group + lane) * step];
                at[lane] = tree.root;
                splits[lane] = &c.splits[tree.splits.clone()];
                leaves[lane] = &c.leaves[tree.leaves.clone()];
            }
            loop {
                let mut walking = false;
                for (reference, splits) in at.iter_mut().zip(splits) {
                    if *reference & LEAF == 0 {
                        let split = &splits[*reference as usize];
                        let code = codes[usize::from(split.feature)];
                        let left = split.goes_left(code, &c.category_sets);
                        *reference = split.children[usize::from(!left)];
                        walking = true;
                    }
                }
                if !walking {
                    break;
                }
            }
            for (reference, leaves) in at.into_iter().zip(leaves) {
                if let Some(value) = leaves.get((reference & !LEAF) as usize) {
                    sum += value;
                }
            }
        }
        sum
    }
}

/// How the compiled layout codes each feature, from the splits of
/// `trees`.
struct FeatureCoding {
    /// Per feature, the sorted distinct thresholds of its numeric splits
    /// (empty when none splits on it), or `None` when its splits are
    /// categorical.
    thresholds: Vec<Option<Vec<f64>>>,
    /// The features some split uses, the only ones coded.
    used: Vec<usize>,
    /// What the layout could not code, if anything.
    problem: Option<&'static str>,
}

impl FeatureCoding {
    fn of(trees: &[HistTree], n_features: usize) -> FeatureCoding {
        let mut thresholds: Vec<Option<Vec<f64>>> = vec![Some(Vec::new()); n_features];
        let mut numeric = vec![false; n_features];
        let mut used = vec![false; n_features];
        let mut problem = None;
        let splits = trees
            .iter()
            .flat_map(|t| t.nodes.iter())
            .filter(|n| n.left != 0);
        for node in splits {
            let f = node.feature as usize;
            let Some(feature) = thresholds.get_mut(f) else {
                problem = Some("a split uses a feature the model does not have");
                continue;
            };
            used[f] = true;
            if node.category_set == NUMERIC_SPLIT {
                numeric[f] = true;
                if let Some(values) = feature {
                    values.push(node.threshold);
                }
            } else {
                *feature = None;
            }
        }
        for (feature, numeric) in thresholds.iter_mut().zip(numeric) {
            match feature {
                Some(values) => {
                    values.sort_by(f64::total_cmp);
                    values.dedup();
                    // A code counts the thresholds below a value, which
                    // +inf (a split on the last bin: every value left,
                    // missing ones right) never is; it must stay below
                    // MISSING.
                    let below_infinity = values.iter().filter(|&&t| t != f64::INFINITY).count();
                    if below_infinity >= usize::from(MISSING) {
                        problem = Some("a feature has more thresholds than bins");
                    }
                }
                None if numeric => {
                    problem = Some("a feature is split both as a number and as categories")
                }
                None => {}
            }
        }
        if n_features > MAX_FEATURES {
            problem = Some("more features than a split can name");
        }
        FeatureCoding {
            thresholds,
            used: (0..n_features).filter(|&f| used[f]).collect(),
            problem,
        }
    }
}

impl Compiled {
    fn of(trees: &[HistTree], n_features: usize, max_bins: u32) -> Compiled {
        let FeatureCoding {
            thresholds, used, ..
        } = FeatureCoding::of(trees, n_features);
        let mut compiled = Compiled {
            used,
            max_bins: f64::from(max_bins),
            ..Compiled::default()
        };
        for tree in trees {
            let first_set = compiled.category_sets.len() as u32;
            // Each node's reference: its rank among the splits, or among
            // the leaves with `LEAF` set.
            let (mut splits, mut leaves) = (0u32, 0u32);
            let reference: Vec<u32> = tree
                .nodes
                .iter()
                .map(|node| {
                    let counter = if node.left == 0 {
                        &mut leaves
                    } else {
                        &mut splits
                    };
                    *counter += 1;
                    (*counter - 1) | if node.left == 0 { LEAF } else { 0 }
                })
                .collect();
            let (first_split, first_leaf) = (compiled.splits.len(), compiled.leaves.len());
            for (node, value) in tree.nodes.iter().zip(&tree.values) {
                if node.left == 0 {
                    compiled.leaves.push(*value);
                    continue;
                }
                let feature = node.feature as usize;
                let operand = match &thresholds[feature] {
                    Some(values) if node.category_set == NUMERIC_SPLIT => {
                        values.partition_point(|&t| t < node.threshold) as u32
                    }
                    _ => CATEGORY_SET | (first_set + node.category_set),
                };
                let left = node.left as usize;
                compiled.splits.push(CompiledSplit {
                    children: [reference[left], reference[left + 1]],
                    operand,
                    feature: feature as u16,
                    missing_left: node.missing_left,
                });
            }
            compiled
                .category_sets
                .extend_from_slice(&tree.category_sets);
            compiled.trees.push(CompiledTree {
                splits: first_split..compiled.splits.len(),
                leaves: first_leaf..compiled.leaves.len(),
                root: reference[0],
            });
        }
        compiled.thresholds = thresholds;
        compiled
    }

    /// A row's byte per feature: for a numeric feature, how many of its
    /// thresholds lie below the value; for a categorical one, the
    /// category's index; `MISSING` for a missing value, and for a category
    /// index that is negative or at least `max_bins`, as when the rows
    /// were binned.
    fn codes(&self, x: &[f64]) -> Vec<u8> {
        let mut codes = vec![0u8; self.thresholds.len()];
        for &f in &self.used {
            let v = x[f];
            codes[f] = match &self.thresholds[f] {
                _ if v.is_nan() => MISSING,
                Some(values) => values.partition_point(|&t| t < v) as u8,
                None if v < 0.0 || v >= self.max_bins => MISSING,
                None => v as u8,
            };
        }
        codes
    }
}

impl Predictor for HistGbm {
    fn predict(&self, x: &[f64]) -> f64 {
        if self.n_classes == 0 {
            return self.init[0] + self.sum_of_trees(0, 1, &self.compiled.codes(x));
        }
        let scores = self.scores(x);
        match scores.len() {
            1 => f64::from(u8::from(scores[0] > 0.0)),
            _ => argmax(&scores) as f64,
        }
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        (self.n_classes > 0).then(|| boosted_proba(&self.scores(x)))
    }
}

struct Settings {
    iterations: usize,
    learning_rate: f64,
    max_leaf_nodes: usize,
    max_depth: Option<usize>,
    min_samples_leaf: u32,
    l2: f64,
    max_bins: usize,
    early_stopping: bool,
    validation_fraction: f64,
    n_iter_no_change: usize,
    tol: f64,
}

impl Settings {
    fn of(params: &Hyperparams, rows: usize) -> Self {
        Settings {
            iterations: params.integer("max_iter").unwrap_or(100) as usize,
            learning_rate: params.float("learning_rate").unwrap_or(0.1),
            max_leaf_nodes: params.integer("max_leaf_nodes").unwrap_or(31) as usize,
            max_depth: params.integer("max_depth").map(|d| d as usize),
            min_samples_leaf: params.integer("min_samples_leaf").unwrap_or(20) as u32,
            l2: params.float("l2_regularization").unwrap_or(0.0),
            max_bins: params.integer("max_bins").unwrap_or(255) as usize,
            early_stopping: match params.text("early_stopping") {
                Some("on") => true,
                Some("off") => false,
                _ => rows > EARLY_STOPPING_ROWS,
            },
            validation_fraction: params.float("validation_fraction").unwrap_or(0.1),
            n_iter_no_change: params.integer("n_iter_no_change").unwrap_or(10) as usize,
            tol: params.float("tol").unwrap_or(1e-7),
        }
    }

    /// Histograms alive at once: one per leaf that may still split, and the
    /// pair being built.
    fn histograms(&self, rows: usize) -> usize {
        let leaves = (rows / (2 * self.min_samples_leaf as usize).max(1)).max(1);
        self.max_leaf_nodes.min(leaves) + 2
    }
}

/// The binned rows (twice, while the columns binned on the threads are
/// put together), the gradients, hessians, scores and gradient blocks of
/// every output, per row its targets twice, its fit or validation index,
/// an absolute-error residual, its place in the row order, the scratch copy
/// and the gathered gradients and hessians, the bin-edge sample per thread
/// (and its sorted copy), and the live histograms with a node's copies; the trees' nodes are taken from the memory budget
/// as they grow.
fn estimated_bytes(shape: &Shape, params: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    let features = shape.features.max(1) as u64;
    let outputs = if shape.classes > 2 { shape.classes } else { 1 } as u64;
    let settings = Settings::of(params, shape.rows);
    let sample = shape.rows.min(BIN_SAMPLE) as u64 * 8 * shape.threads.max(1) as u64;
    2 * rows * features
        + rows * outputs * (4 + 4 + 8 + 8)
        + rows * (8 + 16 + 16 + 8 + 4 + 4 + 4 + 4)
        + 2 * sample
        + (settings.histograms(shape.rows) + 2) as u64 * features * (BINS * BIN_BYTES) as u64
}

/// How a feature's values become bins.
enum Binner {
    /// Bin b holds values in (edges[b-1], edges[b]]; the last bin has no
    /// upper edge.
    Numeric { edges: Vec<f64> },
    /// A category's index is its bin.
    Categorical,
}

impl Binner {
    fn bin(&self, x: f64, max_bins: usize) -> u8 {
        if x.is_nan() {
            return MISSING;
        }
        match self {
            Binner::Numeric { edges } => edges.partition_point(|&e| e < x) as u8,
            Binner::Categorical if x < 0.0 || x >= max_bins as f64 => MISSING,
            Binner::Categorical => x as u8,
        }
    }

    /// Bin edges at quantiles of the sampled values (midpoints between
    /// neighbours, as numpy's "midpoint" percentiles), or between every
    /// two distinct values when there are few enough.
    fn numeric(mut values: Vec<f64>, max_bins: usize) -> Binner {
        values.sort_by(f64::total_cmp);
        let mut distinct = values.clone();
        distinct.dedup();
        let edges = if distinct.len() <= max_bins {
            distinct.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
        } else {
            let last = (values.len() - 1) as f64;
            let mut edges: Vec<f64> = (1..max_bins)
                .map(|k| {
                    let at = k as f64 / max_bins as f64 * last;
                    (values[at.floor() as usize] + values[at.ceil() as usize]) / 2.0
                })
                .collect();
            edges.dedup();
            edges
        };
        Binner::Numeric { edges }
    }
}

/// The gradient and hessian sums of one bin, and its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    g: f64,
    h: f64,
    n: u32,
}

const BIN_BYTES: usize = std::mem::size_of::<Sums>();

impl Sums {
    fn add(&mut self, other: &Sums) {
        self.g += other.g;
        self.h += other.h;
        self.n += other.n;
    }

    fn minus(&self, other: &Sums) -> Sums {
        Sums {
            g: self.g - other.g,
            h: self.h - other.h,
            n: self.n - other.n,
        }
    }
}

/// What a loss needs per row, and how it scores.
enum Loss {
    Squared,
    Absolute,
    /// Binary log loss on the log-odds of class 1.
    Binary,
    /// Multinomial log loss, one score per class.
    Multinomial(usize),
}

enum Targets {
    Values(Vec<f64>),
    Classes(Vec<u32>),
}

impl Loss {
    fn outputs(&self) -> usize {
        match self {
            Loss::Multinomial(k) => *k,
            _ => 1,
        }
    }

    /// The hessian of squared and absolute error is 1 for every row, so
    /// histograms count rows instead of summing it.
    fn constant_hessian(&self) -> bool {
        matches!(self, Loss::Squared | Loss::Absolute)
    }

    fn init(&self, targets: &Targets, rows: &[usize]) -> Vec<f64> {
        let n = rows.len().max(1) as f64;
        match (self, targets) {
            (Loss::Squared, Targets::Values(y)) => {
                vec![rows.iter().map(|&i| y[i]).sum::<f64>() / n]
            }
            (Loss::Absolute, Targets::Values(y)) => {
                let mut values: Vec<f64> = rows.iter().map(|&i| y[i]).collect();
                vec![median(&mut values)]
            }
            (Loss::Binary, Targets::Classes(c)) => {
                let p = (rows.iter().filter(|&&i| c[i] == 1).count() as f64 / n)
                    .clamp(1e-12, 1.0 - 1e-12);
                vec![(p / (1.0 - p)).ln()]
            }
            (Loss::Multinomial(k), Targets::Classes(c)) => {
                let mut counts = vec![0.0; *k];
                rows.iter().for_each(|&i| counts[c[i] as usize] += 1.0);
                counts
                    .iter()
                    .map(|&m| (m / n).clamp(1e-12, 1.0).ln())
                    .collect()
            }
            _ => unreachable!("losses are chosen by the targets"),
        }
    }

    /// Gradients and hessians of every output for the fit rows `block`,
    /// from the scores of all `n` fit rows; output-major within the block
    /// (`[o * block.len() + k]`). Hessians are left out when constant.
    fn gradients_of(
        &self,
        targets: &[TargetOf],
        scores: &[f64],
        block: std::ops::Range<usize>,
    ) -> (Vec<f32>, Vec<f32>) {
        let n = targets.len();
        let len = block.len();
        let outputs = self.outputs();
        let mut g = vec![0f32; len * outputs];
        let mut h = if self.constant_hessian() {
            Vec::new()
        } else {
            vec![0f32; len * outputs]
        };
        let mut p = vec![0.0; outputs];
        for (k, i) in block.enumerate() {
            let y = targets[i];
            match self {
                Loss::Squared => g[k] = (scores[i] - y.value) as f32,
                Loss::Absolute => g[k] = if scores[i] > y.value { 1.0 } else { -1.0 },
                Loss::Binary => {
                    let p = sigmoid(scores[i]);
                    g[k] = (p - y.value) as f32;
                    h[k] = (p * (1.0 - p)) as f32;
                }
                Loss::Multinomial(_) => {
                    let max = (0..outputs)
                        .map(|o| scores[o * n + i])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let mut total = 0.0;
                    for (o, p) in p.iter_mut().enumerate() {
                        *p = (scores[o * n + i] - max).exp();
                        total += *p;
                    }
                    for (o, &p) in p.iter().enumerate() {
                        let p = p / total;
                        let is = f64::from(u8::from(y.class == o as u32));
                        g[o * len + k] = (p - is) as f32;
                        h[o * len + k] = (p * (1.0 - p)) as f32;
                    }
                }
            }
        }
        (g, h)
    }

    /// Gradients and hessians of every output for the fit rows, from their
    /// scores, into `g` and `h` (output-major, `[o * n + i]`), in blocks of
    /// rows on the threads (each row's are its own: the same on any number
    /// of threads).
    fn gradients(
        &self,
        targets: &[TargetOf],
        scores: &[f64],
        (g, h): (&mut [f32], &mut [f32]),
        threads: usize,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<()> {
        const BLOCK: usize = 65_536;
        let n = targets.len();
        let blocks = parallel::run(n.div_ceil(BLOCK), threads, interrupts, |b, hook| {
            hook.check()?;
            Ok(self.gradients_of(targets, scores, b * BLOCK..((b + 1) * BLOCK).min(n)))
        })?;
        for (b, (block_g, block_h)) in blocks.into_iter().enumerate() {
            let (start, len) = (b * BLOCK, block_g.len() / self.outputs());
            for o in 0..self.outputs() {
                let at = o * n + start;
                g[at..at + len].copy_from_slice(&block_g[o * len..(o + 1) * len]);
                if !block_h.is_empty() {
                    h[at..at + len].copy_from_slice(&block_h[o * len..(o + 1) * len]);
                }
            }
        }
        Ok(())
    }

    /// The mean loss of `scores` (output-major, `targets.len()` rows each).
    fn mean(&self, targets: &[TargetOf], scores: &[f64]) -> f64 {
        let n = targets.len();
        let total: f64 = match self {
            Loss::Squared => (0..n)
                .map(|i| 0.5 * (targets[i].value - scores[i]).powi(2))
                .sum(),
            Loss::Absolute => (0..n).map(|i| (targets[i].value - scores[i]).abs()).sum(),
            // log(1 + e^z) − y·z, computed without overflow.
            Loss::Binary => (0..n)
                .map(|i| {
                    let z = scores[i];
                    z.max(0.0) + (-z.abs()).exp().ln_1p() - targets[i].value * z
                })
                .sum(),
            Loss::Multinomial(k) => (0..n)
                .map(|i| {
                    let max = (0..*k)
                        .map(|o| scores[o * n + i])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = (0..*k).map(|o| (scores[o * n + i] - max).exp()).sum();
                    max + total.ln() - scores[targets[i].class as usize * n + i]
                })
                .sum(),
        };
        total / n.max(1) as f64
    }
}

/// A fit row's target: its value (a class as 0/1 for binary log loss), or
/// its class.
#[derive(Clone, Copy)]
struct TargetOf {
    value: f64,
    class: u32,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if values.len() % 2 == 1 {
        upper
    } else {
        let lower = values[..mid]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// The fit rows, binned: `bins[f * rows + i]`.
struct Binned {
    rows: usize,
    bins: Vec<u8>,
}

impl Binned {
    fn column(&self, f: usize) -> &[u8] {
        &self.bins[f * self.rows..(f + 1) * self.rows]
    }
}

/// The best split of a node found so far.
#[derive(Debug, Clone)]
struct Split {
    gain: f64,
    feature: usize,
    /// Numeric: bins up to this one go left.
    bin: u8,
    /// Categorical: the bins that go left (`MISSING` among them when
    /// missing values do).
    categories: Option<[u64; 4]>,
    missing_left: bool,
    left: Sums,
    right: Sums,
}

impl Split {
    fn sends_left(&self, bin: u8) -> bool {
        match &self.categories {
            Some(set) => set[bin as usize / 64] >> (bin % 64) & 1 == 1,
            None if bin == MISSING => self.missing_left,
            None => bin <= self.bin,
        }
    }
}

fn score(s: &Sums, l2: f64) -> f64 {
    s.g * s.g / (s.h + l2)
}

/// The best split of one feature's histogram, if any beats not splitting.
fn best_split_of(
    feature: usize,
    binner: &Binner,
    histogram: &[Sums],
    total: &Sums,
    settings: &Settings,
) -> Option<Split> {
    let parent = score(total, settings.l2);
    let min_leaf = settings.min_samples_leaf;
    let mut best: Option<Split> = None;
    let mut consider = |left: Sums, bin: u8, categories: Option<[u64; 4]>, missing_left: bool| {
        let right = total.minus(&left);
        if left.n < min_leaf || right.n < min_leaf || left.h < MIN_HESSIAN || right.h < MIN_HESSIAN
        {
            return;
        }
        let gain = score(&left, settings.l2) + score(&right, settings.l2) - parent;
        if gain > 0.0 && best.as_ref().is_none_or(|b| gain > b.gain) {
            best = Some(Split {
                gain,
                feature,
                bin,
                categories,
                missing_left,
                left,
                right,
            });
        }
    };
    let missing = histogram[MISSING as usize];
    match binner {
        Binner::Numeric { edges } => {
            let mut below = Sums::default();
            for (b, sums) in histogram.iter().enumerate().take(edges.len() + 1) {
                below.add(sums);
                if missing.n == 0 {
                    // No missing value was seen: a missing one goes where
                    // most rows went.
                    let right = total.minus(&below);
                    consider(below, b as u8, None, below.n >= right.n);
                } else {
                    consider(below, b as u8, None, false);
                    let mut with_missing = below;
                    with_missing.add(&missing);
                    consider(with_missing, b as u8, None, true);
                }
            }
        }
        Binner::Categorical => {
            let mut categories: Vec<(u8, f64)> = histogram
                .iter()
                .enumerate()
                .filter(|(_, s)| s.n >= MIN_CATEGORY_SUPPORT)
                .map(|(b, s)| (b as u8, s.g / (s.h + f64::from(MIN_CATEGORY_SUPPORT))))
                .collect();
            categories.sort_by(|a, b| a.1.total_cmp(&b.1));
            let most = MAX_CATEGORIES_LEFT.min(categories.len().div_ceil(2));
            for order in [false, true] {
                let mut left = Sums::default();
                let mut set = [0u64; 4];
                for k in 0..most {
                    let (bin, _) = if order {
                        categories[categories.len() - 1 - k]
                    } else {
                        categories[k]
                    };
                    left.add(&histogram[bin as usize]);
                    set[bin as usize / 64] |= 1 << (bin % 64);
                    let missing_left = set[MISSING as usize / 64] >> (MISSING % 64) & 1 == 1;
                    consider(left, 0, Some(set), missing_left);
                }
            }
        }
    }
    best
}

/// The histograms of one feature over `rows`, whose gradients and hessians
/// are `g[k]`, `h[k]` (in the same order). The hot loop of the fit: a
/// fixed-size array indexed by a byte needs no bounds check.
fn histogram_of(
    column: &[u8],
    rows: NodeRows<'_>,
    g: &[f32],
    h: &[f32],
    constant_hessian: bool,
) -> Vec<Sums> {
    let mut out = [Sums::default(); BINS];
    let mut add = |bin: u8, g: f32, h: f32| {
        let sums = &mut out[usize::from(bin)];
        sums.g += f64::from(g);
        sums.h += f64::from(h);
        sums.n += 1;
    };
    match (rows, constant_hessian) {
        (NodeRows::All, true) => column.iter().zip(g).for_each(|(&b, &g)| add(b, g, 0.0)),
        (NodeRows::All, false) => column
            .iter()
            .zip(g)
            .zip(h)
            .for_each(|((&b, &g), &h)| add(b, g, h)),
        (NodeRows::Some(rows), true) => rows
            .iter()
            .zip(g)
            .for_each(|(&r, &g)| add(column[r as usize], g, 0.0)),
        (NodeRows::Some(rows), false) => rows
            .iter()
            .zip(g)
            .zip(h)
            .for_each(|((&r, &g), &h)| add(column[r as usize], g, h)),
    }
    if constant_hessian {
        out.iter_mut().for_each(|b| b.h = f64::from(b.n));
    }
    out.to_vec()
}

/// A node's rows: every fit row in order (the root), whose bins and
/// gradients are read as they lie, or some of them.
#[derive(Clone, Copy)]
enum NodeRows<'a> {
    All,
    Some(&'a [u32]),
}

/// A leaf of the growing tree: its node, its rows (a range of the row
/// order), and, while it may still split, its histograms and best split.
struct Leaf {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    sums: Sums,
    histograms: Option<Vec<Sums>>,
    split: Option<Split>,
}

/// A node of the tree being grown, in bins.
struct Growing {
    split: Option<Split>,
    left: usize,
    value: f64,
}

/// What one tree's growth works on, shared by every tree of the fit.
struct Grower<'a> {
    binned: &'a Binned,
    binners: &'a [Binner],
    settings: &'a Settings,
    constant_hessian: bool,
    threads: usize,
    memory: &'a MemoryBudget,
    interrupts: &'a Interrupts<'a>,
}

impl Grower<'_> {
    fn may_split(&self, depth: usize, sums: &Sums) -> bool {
        self.settings.max_depth.is_none_or(|d| depth < d)
            && sums.n >= 2 * self.settings.min_samples_leaf
            && sums.h >= 2.0 * MIN_HESSIAN
    }

    /// scikit-learn's: the epsilon keeps a node with no hessian (a class
    /// no row of it has left) at 0 rather than 0/0.
    fn leaf_value(&self, sums: &Sums) -> f64 {
        -self.settings.learning_rate * sums.g / (sums.h + self.settings.l2 + f64::EPSILON)
    }

    /// Histograms and best splits of `small` (built from its rows), and of
    /// its sibling `large` when a parent's histograms are given (parent −
    /// small), feature by feature on the threads.
    #[allow(clippy::type_complexity)]
    fn histograms(
        &self,
        rows: &[u32],
        g: &[f32],
        h: &[f32],
        small: (&Sums, bool),
        large: Option<(&[Sums], &Sums, bool)>,
    ) -> MlResult<(Vec<Sums>, Option<Split>, Option<(Vec<Sums>, Option<Split>)>)> {
        let features = self.binners.len();
        // Gradients in the node's row order, so each feature's pass reads
        // them in sequence; the root's are already.
        let every_row = rows.len() == self.binned.rows;
        let gather = |all: &[f32]| -> Vec<f32> {
            if every_row || all.is_empty() {
                Vec::new()
            } else {
                rows.iter().map(|&r| all[r as usize]).collect()
            }
        };
        let (ordered_g, ordered_h) = (gather(g), gather(h));
        let (node_rows, g, h) = if every_row {
            (NodeRows::All, g, h)
        } else {
            (NodeRows::Some(rows), &ordered_g[..], &ordered_h[..])
        };
        let threads = if rows.len() * features < PARALLEL_WORK {
            1
        } else {
            self.threads
        };
        // The threads share what the histograms are made of, not `self`,
        // whose interrupt hook only the calling thread may call.
        let (binned, binners, settings) = (self.binned, self.binners, self.settings);
        let constant_hessian = self.constant_hessian;
        let per_feature = parallel::run(features, threads, self.interrupts, |f, _| {
            let own = histogram_of(binned.column(f), node_rows, g, h, constant_hessian);
            let own_split = small
                .1
                .then(|| best_split_of(f, &binners[f], &own, small.0, settings))
                .flatten();
            let sibling = large.map(|(parent, sums, may_split)| {
                let theirs: Vec<Sums> = parent[f * BINS..(f + 1) * BINS]
                    .iter()
                    .zip(&own)
                    .map(|(p, s)| p.minus(s))
                    .collect();
                let split = may_split
                    .then(|| best_split_of(f, &binners[f], &theirs, sums, settings))
                    .flatten();
                (theirs, split)
            });
            Ok((own, own_split, sibling))
        })?;
        let mut own = Vec::with_capacity(features * BINS);
        let mut own_best: Option<Split> = None;
        let mut sibling: Option<(Vec<Sums>, Option<Split>)> =
            large.map(|_| (Vec::with_capacity(features * BINS), None));
        // Features in order, a later one winning only with a larger gain:
        // ties go to the first feature, whatever thread found them.
        let better = |best: &Option<Split>, candidate: &Option<Split>| match (best, candidate) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(b), Some(c)) => c.gain > b.gain,
        };
        for (histogram, split, theirs) in per_feature {
            own.extend_from_slice(&histogram);
            if better(&own_best, &split) {
                own_best = split;
            }
            if let (Some((all, best)), Some((histogram, split))) = (sibling.as_mut(), theirs) {
                all.extend_from_slice(&histogram);
                if better(best, &split) {
                    *best = split;
                }
            }
        }
        Ok((own, own_best, sibling))
    }

    /// Grows one tree on the gradients `g`, `h` of the fit rows, reordering
    /// `order` so each leaf's rows are a range of it. Returns the tree's
    /// nodes (in bins) and its leaves.
    fn grow(
        &self,
        g: &[f32],
        h: &[f32],
        order: &mut [u32],
        scratch: &mut Vec<u32>,
        gains: &mut [f64],
    ) -> MlResult<(Vec<Growing>, Vec<Leaf>)> {
        self.interrupts.check()?;
        // Rows in table order: partitions are stable, so every node's rows
        // stay in increasing order, and reading their bins, gradients and
        // scores walks memory forwards.
        for (k, row) in order.iter_mut().enumerate() {
            *row = k as u32;
        }
        let mut total = Sums::default();
        for &r in order.iter() {
            total.g += f64::from(g[r as usize]);
            total.h += if self.constant_hessian {
                1.0
            } else {
                f64::from(h[r as usize])
            };
            total.n += 1;
        }
        let node_bytes = std::mem::size_of::<Growing>() as u64 + 32;
        self.memory.take(node_bytes)?;
        let mut nodes = vec![Growing {
            split: None,
            left: 0,
            value: self.leaf_value(&total),
        }];
        let mut root = Leaf {
            node: 0,
            start: 0,
            end: order.len(),
            depth: 0,
            sums: total,
            histograms: None,
            split: None,
        };
        if self.may_split(0, &total) {
            let (histograms, split, _) = self.histograms(order, g, h, (&total, true), None)?;
            root.histograms = Some(histograms);
            root.split = split;
        }
        let mut leaves = vec![root];
        while leaves.len() < self.settings.max_leaf_nodes {
            // The leaf with the best gain; ties go to the older node.
            let Some(at) = leaves
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.split.as_ref().map(|s| (i, s.gain, l.node)))
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
                .map(|(i, _, _)| i)
            else {
                break;
            };
            self.interrupts.check()?;
            self.memory.take(2 * node_bytes)?;
            let parent = leaves.swap_remove(at);
            let split = parent.split.expect("chosen for its split");
            gains[split.feature] += split.gain;
            // Stable partition of the parent's rows, left ones first, each
            // row's side looked up by its bin.
            let column = self.binned.column(split.feature);
            let mut left_bins = [false; BINS];
            for (bin, left) in left_bins.iter_mut().enumerate() {
                *left = split.sends_left(bin as u8);
            }
            let rows = &mut order[parent.start..parent.end];
            scratch.clear();
            scratch.resize(rows.len(), 0);
            let (mut kept, mut sent) = (0, 0);
            for k in 0..rows.len() {
                let r = rows[k];
                let left = left_bins[usize::from(column[r as usize])];
                // Written to both sides and counted on one: a branch on the
                // side, which is data, was mispredicted half the time (the
                // fit's costliest instruction). `kept <= k`, so `rows[kept]`
                // has been read.
                rows[kept] = r;
                scratch[sent] = r;
                kept += usize::from(left);
                sent += usize::from(!left);
            }
            rows[kept..].copy_from_slice(&scratch[..sent]);
            let middle = parent.start + kept;
            let left_node = nodes.len();
            nodes.push(Growing {
                split: None,
                left: 0,
                value: self.leaf_value(&split.left),
            });
            nodes.push(Growing {
                split: None,
                left: 0,
                value: self.leaf_value(&split.right),
            });
            let depth = parent.depth + 1;
            let mut left = Leaf {
                node: left_node,
                start: parent.start,
                end: middle,
                depth,
                sums: split.left,
                histograms: None,
                split: None,
            };
            let mut right = Leaf {
                node: left_node + 1,
                start: middle,
                end: parent.end,
                depth,
                sums: split.right,
                histograms: None,
                split: None,
            };
            let node = &mut nodes[parent.node];
            node.left = left_node;
            node.split = Some(split);
            let (left_may, right_may) = (
                self.may_split(depth, &left.sums),
                self.may_split(depth, &right.sums),
            );
            if left_may || right_may {
                let parent_histograms = parent.histograms.expect("a split leaf has histograms");
                let (small, large) = if left.sums.n <= right.sums.n {
                    (&mut left, &mut right)
                } else {
                    (&mut right, &mut left)
                };
                let small_may = self.may_split(depth, &small.sums);
                let large_may = self.may_split(depth, &large.sums);
                let (histograms, split, sibling) = self.histograms(
                    &order[small.start..small.end],
                    g,
                    h,
                    (&small.sums, small_may),
                    large_may.then_some((&parent_histograms[..], &large.sums, true)),
                )?;
                if small_may {
                    small.histograms = Some(histograms);
                    small.split = split;
                }
                if let Some((histograms, split)) = sibling {
                    large.histograms = Some(histograms);
                    large.split = split;
                }
            }
            leaves.push(left);
            leaves.push(right);
        }
        Ok((nodes, leaves))
    }
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let features = data.dataset.width();
    if features > MAX_FEATURES {
        return Err(MlError::invalid(format!(
            "hist_gbm takes at most {MAX_FEATURES} features, and the preprocessed rows have {features}"
        ))
        .with_hint("one-hot encoding makes a feature per category; encode text ordinal, hist_gbm's default"));
    }
    let (loss, targets, n_classes) = match &data.dataset.labels {
        Labels::Classes { encoding, index } => {
            let k = encoding.classes.len();
            let loss = if k == 2 {
                Loss::Binary
            } else {
                Loss::Multinomial(k)
            };
            let classes = index.iter().map(|&c| c as u32).collect();
            (loss, Targets::Classes(classes), k)
        }
        Labels::Values(values) => {
            let loss = match data.params.text("loss") {
                Some("absolute_error") => Loss::Absolute,
                _ => Loss::Squared,
            };
            (loss, Targets::Values(values.clone()), 0)
        }
    };
    let settings = Settings::of(data.params, data.rows.len());
    let (fit_rows, validation_rows) = if settings.early_stopping {
        hold_out(data.rows, &targets, settings.validation_fraction, data.seed)
    } else {
        (data.rows.to_vec(), Vec::new())
    };
    let n = fit_rows.len();
    let outputs = loss.outputs();
    let binners = binners(data, &fit_rows, &settings)?;
    let bin_rows = |rows: &[usize]| -> MlResult<Binned> {
        let columns = parallel::run(features, data.threads, data.interrupts, |f, hook| {
            hook.check()?;
            Ok(rows
                .iter()
                .map(|&i| binners[f].bin(data.dataset.row(i)[f], settings.max_bins))
                .collect::<Vec<u8>>())
        })?;
        Ok(Binned {
            rows: rows.len(),
            bins: columns.concat(),
        })
    };
    let binned = bin_rows(&fit_rows)?;
    let validation = bin_rows(&validation_rows)?;
    let target_of = |i: usize| match &targets {
        Targets::Values(y) => TargetOf {
            value: y[i],
            class: 0,
        },
        Targets::Classes(c) => TargetOf {
            value: f64::from(c[i]),
            class: c[i],
        },
    };
    let fit_targets: Vec<TargetOf> = fit_rows.iter().map(|&i| target_of(i)).collect();
    let validation_targets: Vec<TargetOf> = validation_rows.iter().map(|&i| target_of(i)).collect();
    let init = loss.init(&targets, &fit_rows);
    let mut scores: Vec<f64> = init
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, n))
        .collect();
    let m = validation_rows.len();
    let mut validation_scores: Vec<f64> = init
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, m))
        .collect();
    let mut g = vec![0f32; n * outputs];
    let mut h = if loss.constant_hessian() {
        Vec::new()
    } else {
        vec![0f32; n * outputs]
    };
    let mut order = vec![0u32; n];
    let mut scratch = Vec::with_capacity(n);
    let mut gains = vec![0.0; features];
    let grower = Grower {
        binned: &binned,
        binners: &binners,
        settings: &settings,
        constant_hessian: loss.constant_hessian(),
        threads: data.threads,
        memory: data.memory,
        interrupts: data.interrupts,
    };
    let mut trees = Vec::new();
    let mut history = vec![-loss.mean(&validation_targets, &validation_scores)];
    for _ in 0..settings.iterations {
        loss.gradients(
            &fit_targets,
            &scores,
            (&mut g, &mut h),
            data.threads,
            data.interrupts,
        )?;
        for o in 0..outputs {
            let gradients = &g[o * n..(o + 1) * n];
            let hessians = if h.is_empty() {
                &h[..]
            } else {
                &h[o * n..(o + 1) * n]
            };
            let (mut nodes, leaves) =
                grower.grow(gradients, hessians, &mut order, &mut scratch, &mut gains)?;
            let own_scores = &mut scores[o * n..(o + 1) * n];
            if let Loss::Absolute = loss {
                absolute_error_steps(
                    &mut nodes,
                    &leaves,
                    &order,
                    &fit_targets,
                    own_scores,
                    &settings,
                );
            }
            for leaf in &leaves {
                let value = nodes[leaf.node].value;
                for &r in &order[leaf.start..leaf.end] {
                    own_scores[r as usize] += value;
                }
            }
            let own_validation = &mut validation_scores[o * m..(o + 1) * m];
            for (k, score) in own_validation.iter_mut().enumerate() {
                *score += value_in_bins(&nodes, |f| validation.column(f)[k]);
            }
            trees.push(finish(nodes, &binners));
        }
        if settings.early_stopping {
            history.push(-loss.mean(&validation_targets, &validation_scores));
            if should_stop(&history, settings.n_iter_no_change, settings.tol) {
                break;
            }
        }
    }
    let total: f64 = gains.iter().sum();
    if total > 0.0 {
        gains.iter_mut().for_each(|v| *v /= total);
    }
    let model = HistGbm {
        n_classes: n_classes as u32,
        init,
        max_bins: settings.max_bins as u32,
        trees,
        importances: gains,
        compiled: Compiled::default(),
    };
    // What is stored must decode: the checks a decode makes, made now.
    model.validate(features, n_classes)?;
    Ok(Estimator::HistGbm(model))
}

/// scikit-learn's rule: stop when none of the last `n` validation scores
/// beats the one before them by more than `tol`.
fn should_stop(history: &[f64], n: usize, tol: f64) -> bool {
    if history.len() <= n {
        return false;
    }
    let reference = history[history.len() - n - 1] + tol;
    !history[history.len() - n..].iter().any(|&s| s > reference)
}

/// A validation split of the training rows, stratified by class, drawn
/// from the seed: `(fit rows, validation rows)`, each in training order.
fn hold_out(
    rows: &[usize],
    targets: &Targets,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(super::unit_seed(seed, 0x6869_7374));
    let mut held = vec![false; rows.len()];
    let mut strata: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (k, &i) in rows.iter().enumerate() {
        let stratum = match targets {
            Targets::Classes(c) => c[i],
            Targets::Values(_) => 0,
        };
        strata.entry(stratum).or_default().push(k);
    }
    for members in strata.values() {
        let take = (members.len() as f64 * fraction).round() as usize;
        for pick in sample(&mut rng, members.len(), take.min(members.len())) {
            held[members[pick]] = true;
        }
    }
    let (mut fit, mut validation) = (Vec::new(), Vec::new());
    for (k, &i) in rows.iter().enumerate() {
        if held[k] {
            validation.push(i);
        } else {
            fit.push(i);
        }
    }
    (fit, validation)
}

/// Each feature's bins, from a sample of the fit rows drawn from the seed.
fn binners(data: &TrainingData<'_>, rows: &[usize], settings: &Settings) -> MlResult<Vec<Binner>> {
    let sampled: Vec<usize> = if rows.len() > BIN_SAMPLE {
        let mut rng = ChaCha8Rng::seed_from_u64(data.seed);
        let mut picks = sample(&mut rng, rows.len(), BIN_SAMPLE).into_vec();
        picks.sort_unstable();
        picks.into_iter().map(|k| rows[k]).collect()
    } else {
        rows.to_vec()
    };
    parallel::run(
        data.dataset.width(),
        data.threads,
        data.interrupts,
        |f, hook| {
            hook.check()?;
            Ok(match data.dataset.kinds[f] {
                ColumnKind::Categorical => {
                    // One bin per category: more than the bins would put
                    // some with the missing values, so it is refused, as
                    // scikit-learn does.
                    let most = rows
                        .iter()
                        .map(|&i| data.dataset.row(i)[f])
                        .filter(|v| !v.is_nan())
                        .fold(-1.0, f64::max);
                    if most >= settings.max_bins as f64 {
                        return Err(MlError::invalid(format!(
                            "feature \"{}\" has {} categories, more than max_bins ({})",
                            data.dataset.feature_names[f],
                            most as usize + 1,
                            settings.max_bins
                        ))
                        .with_hint(
                            "raise max_bins (up to 255), or lower the column's max_categories",
                        ));
                    }
                    Binner::Categorical
                }
                _ => Binner::numeric(
                    sampled
                        .iter()
                        .map(|&i| data.dataset.row(i)[f])
                        .filter(|v| !v.is_nan())
                        .collect(),
                    settings.max_bins,
                ),
            })
        },
    )
}

/// Absolute error: each node's step becomes the median residual of its
/// rows (learning rate included), as scikit-learn's leaves do; inner nodes
/// too, so explanations follow the same values.
fn absolute_error_steps(
    nodes: &mut [Growing],
    leaves: &[Leaf],
    order: &[u32],
    targets: &[TargetOf],
    scores: &[f64],
    settings: &Settings,
) {
    // Each node's rows are a range of the order: the union of its leaves'.
    let mut range = vec![(usize::MAX, 0usize); nodes.len()];
    for leaf in leaves {
        range[leaf.node] = (leaf.start, leaf.end);
    }
    for i in (0..nodes.len()).rev() {
        if nodes[i].split.is_some() {
            let (l, r) = (range[nodes[i].left], range[nodes[i].left + 1]);
            range[i] = (l.0.min(r.0), l.1.max(r.1));
        }
    }
    let mut residuals = Vec::new();
    for (node, &(start, end)) in nodes.iter_mut().zip(&range) {
        residuals.clear();
        residuals.extend(
            order[start..end]
                .iter()
                .map(|&r| targets[r as usize].value - scores[r as usize]),
        );
        node.value = settings.learning_rate * median(&mut residuals);
    }
}

/// A tree's value for one row, routed by its bins.
fn value_in_bins(nodes: &[Growing], bin_of: impl Fn(usize) -> u8) -> f64 {
    let mut at = 0;
    loop {
        match &nodes[at].split {
            None => return nodes[at].value,
            Some(split) => {
                at = nodes[at].left + usize::from(!split.sends_left(bin_of(split.feature)));
            }
        }
    }
}

/// The tree in raw values, for prediction: a numeric split's bin becomes
/// its upper edge.
fn finish(nodes: Vec<Growing>, binners: &[Binner]) -> HistTree {
    let mut tree = HistTree {
        nodes: Vec::with_capacity(nodes.len()),
        values: Vec::with_capacity(nodes.len()),
        category_sets: Vec::new(),
    };
    for node in nodes {
        tree.values.push(node.value);
        tree.nodes.push(match node.split {
            None => HistNode {
                feature: 0,
                left: 0,
                threshold: 0.0,
                category_set: NUMERIC_SPLIT,
                missing_left: false,
            },
            Some(split) => {
                let (threshold, category_set) = match (split.categories, &binners[split.feature]) {
                    (Some(set), _) => {
                        tree.category_sets.push(set);
                        (0.0, (tree.category_sets.len() - 1) as u32)
                    }
                    (None, Binner::Numeric { edges }) => (
                        edges
                            .get(split.bin as usize)
                            .copied()
                            .unwrap_or(f64::INFINITY),
                        NUMERIC_SPLIT,
                    ),
                    (None, Binner::Categorical) => unreachable!("categorical splits have sets"),
                };
                HistNode {
                    feature: split.feature as u32,
                    left: node.left as u32,
                    threshold,
                    category_set,
                    missing_left: split.missing_left,
                }
            }
        });
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{Dataset, RawLabels};
    use crate::ml::{MlErrorKind, Task};

    /// `n` rows of three features: `x0` a number, missing in every tenth
    /// row; `x1` one of 12 categories (an ordinal index); `x2` noise. The
    /// label is high when `x0` is missing, when `x1` is one of {1, 4, 7,
    /// 10} (which no threshold on the index separates), or when `x0` > 0.5.
    fn data(n: usize, task: Task) -> Dataset {
        let mut records = Vec::with_capacity(n * 3);
        let mut high = Vec::with_capacity(n);
        for i in 0..n {
            let x0 = if i % 10 == 0 {
                f64::NAN
            } else {
                ((i * 7919) % 1000) as f64 / 1000.0
            };
            let x1 = ((i * 31) % 12) as f64;
            records.extend([x0, x1, ((i * 104_729) % 997) as f64]);
            high.push(x0.is_nan() || [1.0, 4.0, 7.0, 10.0].contains(&x1) || x0 > 0.5);
        }
        let labels = match task {
            Task::Classification => RawLabels::Classes(
                crate::ml::dataset::LabelKind::Boolean,
                high.iter().map(|h| h.to_string()).collect(),
            ),
            Task::Regression => RawLabels::Values(
                high.iter()
                    .enumerate()
                    .map(|(i, &h)| f64::from(u8::from(h)) * 10.0 + (i % 7) as f64 / 10.0)
                    .collect(),
            ),
        };
        let raw =
            Dataset::new(vec!["x0".into(), "x1".into(), "x2".into()], records, labels).unwrap();
        let mut kinds = vec![ColumnKind::Numeric; 3];
        kinds[1] = ColumnKind::Categorical;
        raw.encoded(raw.feature_names.clone(), kinds, raw.records.clone())
            .unwrap()
    }

    fn fit_with(
        d: &Dataset,
        params: serde_json::Value,
        threads: usize,
        memory: &MemoryBudget,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<HistGbm> {
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params =
            Hyperparams::validate("hist_gbm", SPEC.params(d.task()).unwrap(), &params).unwrap();
        match fit(&TrainingData {
            dataset: d,
            rows: &rows,
            params: &params,
            seed: 3,
            threads,
            memory,
            interrupts,
        })? {
            Estimator::HistGbm(m) => Ok(m.compiled()),
            other => panic!("{other:?}"),
        }
    }

    fn fit_plain(d: &Dataset, params: serde_json::Value, threads: usize) -> HistGbm {
        fit_with(
            d,
            params,
            threads,
            &MemoryBudget::unlimited(),
            &Interrupts::none(),
        )
        .unwrap()
    }

    #[test]
    fn one_and_two_threads_give_the_same_model() {
        // 30,000 rows × 3 features: the root's histograms are built on
        // both threads.
        for task in [Task::Classification, Task::Regression] {
            let d = data(30_000, task);
            let one = fit_plain(&d, serde_json::json!({"max_iter": 20}), 1);
            let two = fit_plain(&d, serde_json::json!({"max_iter": 20}), 2);
            assert!(one == two, "{task:?}");
            one.validate(3, if task == Task::Classification { 2 } else { 0 })
                .unwrap();
        }
    }

    #[test]
    fn a_multiclass_fit_on_several_gradient_blocks_is_the_same_on_two_threads() {
        // 70,000 rows: the gradients come in two blocks, output-major.
        let n = 70_000;
        let mut records = Vec::with_capacity(n * 2);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b) = (((i * 7919) % 1000) as f64, ((i * 31) % 7) as f64);
            records.extend([a, b]);
            labels.push(["x", "y", "z"][(a as usize / 300 + b as usize) % 3].to_string());
        }
        let d = Dataset::new(
            vec!["a".into(), "b".into()],
            records,
            RawLabels::Classes(crate::ml::dataset::LabelKind::Text, labels),
        )
        .unwrap();
        let params = serde_json::json!({"max_iter": 3});
        let one = fit_plain(&d, params.clone(), 1);
        assert!(one == fit_plain(&d, params, 2));
        assert_eq!(one.trees.len(), 9);
        one.validate(2, 3).unwrap();
    }

    #[test]
    fn a_feature_missing_in_every_row_is_refused_as_constant() {
        let d = Dataset::new(
            vec!["x".into()],
            vec![f64::NAN; 100],
            RawLabels::Values((0..100).map(f64::from).collect()),
        )
        .unwrap();
        let options = crate::ml::preprocess::default_options(&d, InputStyle::Native);
        let params = Hyperparams::validate(
            "hist_gbm",
            SPEC.params(Task::Regression).unwrap(),
            &serde_json::Value::Null,
        )
        .unwrap();
        let err = crate::ml::model::train(
            d.clone(),
            &crate::ml::model::FitRequest {
                algorithm: &SPEC,
                params: &params,
                split: &crate::ml::model::test_split(&d, 1),
                seed: 1,
                threads: 1,
                preprocess: &options,
                memory: &MemoryBudget::unlimited(),
            },
            &Interrupts::none(),
        )
        .err()
        .expect("refused");
        assert!(err.message.contains("constant"), "{}", err.message);
    }

    #[test]
    fn more_categories_than_bins_are_refused() {
        // x1 has 12 categories.
        let d = data(2_000, Task::Classification);
        let err = fit_with(
            &d,
            serde_json::json!({"max_bins": 10}),
            1,
            &MemoryBudget::unlimited(),
            &Interrupts::none(),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("12 categories, more than max_bins (10)"),
            "{}",
            err.message
        );
        assert!(fit_with(
            &d,
            serde_json::json!({"max_bins": 12}),
            1,
            &MemoryBudget::unlimited(),
            &Interrupts::none(),
        )
        .is_ok());
    }

    #[test]
    fn missing_values_and_category_sets_are_learned() {
        let d = data(20_000, Task::Classification);
        let model = fit_plain(&d, serde_json::Value::Null, 2);
        let wrong = (0..d.n_rows())
            .filter(|&i| model.predict(d.row(i)) != d.label_value(i))
            .count();
        assert!(wrong * 1000 < d.n_rows(), "{wrong} rows wrong");
        // A missing x0 is high, whatever x1 is.
        assert_eq!(model.predict(&[f64::NAN, 0.0, 5.0]), 1.0);
        assert_eq!(model.predict(&[0.1, 0.0, 5.0]), 0.0);
        // A category never seen, or a negative index (one folded away),
        // goes where missing ones go, without a crash.
        model.predict(&[0.1, 300.0, 5.0]);
        model.predict(&[0.1, -1.0, 5.0]);
        // One split on x1 sends {1, 4, 7, 10} one way and the rest the
        // other: a set, not a threshold.
        // (With x0 constant, so x1 carries all there is to learn.)
        let only_x1 = {
            let mut records = d.records.clone();
            records.chunks_mut(3).for_each(|r| r[0] = 0.0);
            d.encoded(d.feature_names.clone(), d.kinds.clone(), records)
                .unwrap()
        };
        let stump = fit_plain(
            &only_x1,
            serde_json::json!({"max_iter": 1, "max_leaf_nodes": 2, "early_stopping": "off"}),
            1,
        );
        let tree = &stump.trees[0];
        assert_eq!(tree.nodes[0].feature, 1);
        let set = tree.category_sets[tree.nodes[0].category_set as usize];
        let left: Vec<usize> = (0..12).filter(|&k| set[0] >> k & 1 == 1).collect();
        assert!(
            left == [1, 4, 7, 10] || left == [0, 2, 3, 5, 6, 8, 9, 11],
            "{left:?}"
        );
    }

    #[test]
    fn early_stopping_stops_when_the_validation_loss_stops_falling() {
        let d = data(20_000, Task::Regression);
        let params =
            |stopping: &str| serde_json::json!({"max_iter": 500, "early_stopping": stopping});
        let stopped = fit_plain(&d, params("auto"), 2);
        assert!(stopped.trees.len() < 500, "{}", stopped.trees.len());
        assert_eq!(fit_plain(&d, params("off"), 2).trees.len(), 500);
        // Below 10,000 rows "auto" is off, as in scikit-learn.
        let small = data(5_000, Task::Regression);
        assert_eq!(fit_plain(&small, params("auto"), 2).trees.len(), 500);
    }

    #[test]
    fn an_interrupt_stops_the_fit_and_memory_is_bounded() {
        let d = data(30_000, Task::Classification);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let hook = || {
            if calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 50 {
                Err(MlError::invalid("canceled"))
            } else {
                Ok(())
            }
        };
        let err = fit_with(
            &d,
            serde_json::json!({"max_iter": 1000, "early_stopping": "off"}),
            2,
            &MemoryBudget::unlimited(),
            &Interrupts::new(&hook),
        )
        .unwrap_err();
        assert_eq!(err.message, "canceled");
        assert!(calls.load(std::sync::atomic::Ordering::Relaxed) < 60);
        let err = fit_with(
            &d,
            serde_json::json!({"max_iter": 1000}),
            2,
            &MemoryBudget::new(10_000),
            &Interrupts::none(),
        )
        .unwrap_err();
        assert_eq!(err.kind, MlErrorKind::OutOfMemory);
    }

    #[test]
    fn absolute_error_follows_the_median_past_outliers() {
        // y = x, with one row in twenty of every x a wild outlier.
        let n = 4_000;
        let records: Vec<f64> = (0..n).map(|i| (i % 100) as f64).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| {
                if (i / 100) % 20 == 0 {
                    1e6
                } else {
                    (i % 100) as f64
                }
            })
            .collect();
        let d = Dataset::new(vec!["x".into()], records, RawLabels::Values(y)).unwrap();
        let error_at_50 = |loss: &str| {
            let m = fit_plain(&d, serde_json::json!({"loss": loss, "max_iter": 200}), 1);
            (m.predict(&[50.0]) - 50.0).abs()
        };
        assert!(error_at_50("absolute_error") < 2.0);
        assert!(error_at_50("squared_error") > 1_000.0);
    }

    #[test]
    fn damaged_trees_are_refused() {
        let d = data(2_000, Task::Classification);
        let model = fit_plain(&d, serde_json::Value::Null, 1);
        model.validate(3, 2).unwrap();
        let mut backwards = model.clone();
        let tree = &mut backwards.trees[0];
        let split = tree.nodes.iter().position(|n| n.left != 0).unwrap();
        // Its right child would be past the end.
        tree.nodes[split].left = tree.nodes.len() as u32 - 1;
        assert!(backwards.validate(3, 2).is_err());
        // A child that points back at its parent would loop forever.
        let mut looping = model.clone();
        let tree = &mut looping.trees[0];
        let inner = (1..tree.nodes.len())
            .find(|&i| tree.nodes[i].left != 0)
            .expect("the first tree splits below its root");
        tree.nodes[inner].left = inner as u32;
        assert!(looping.validate(3, 2).is_err());
        let mut no_set = model.clone();
        let tree = &mut no_set.trees[0];
        tree.nodes[split].category_set = 7;
        tree.category_sets.clear();
        assert!(no_set.validate(3, 2).is_err());
        let mut wrong_width = model.clone();
        wrong_width.importances.pop();
        assert!(wrong_width.validate(3, 2).is_err());
        assert!(model.validate(3, 3).is_err());
        // The compiled layout codes a feature one way: as a number or as
        // categories (x1's splits are categorical).
        let mut both_ways = model.clone();
        let numeric = both_ways.trees[0]
            .nodes
            .iter()
            .position(|n| n.left != 0 && n.category_set == NUMERIC_SPLIT)
            .expect("a numeric split");
        both_ways.trees[0].nodes[numeric].feature = 1;
        assert!(both_ways.validate(3, 2).is_err());
    }

    /// A regressor of one tree on one feature: a chain of splits at
    /// `thresholds`, each sending values at most its threshold to a leaf
    /// (worth the split's position) and the rest on.
    fn comb(thresholds: &[f64]) -> HistGbm {
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        for (k, &threshold) in thresholds.iter().enumerate() {
            let at = nodes.len() as u32;
            nodes.push(HistNode {
                feature: 0,
                left: at + 1,
                threshold,
                category_set: NUMERIC_SPLIT,
                missing_left: false,
            });
            nodes.push(HistNode {
                feature: 0,
                left: 0,
                threshold: 0.0,
                category_set: NUMERIC_SPLIT,
                missing_left: false,
            });
            values.extend([0.0, k as f64]);
        }
        nodes.push(nodes[1]);
        values.push(-1.0);
        HistGbm {
            n_classes: 0,
            init: vec![0.0],
            max_bins: 255,
            trees: vec![HistTree {
                nodes,
                values,
                category_sets: Vec::new(),
            }],
            importances: vec![1.0],
            compiled: Compiled::default(),
        }
    }

    #[test]
    fn a_split_on_the_last_bin_does_not_count_against_the_codes() {
        // 254 edges and the split sending every value left (threshold
        // +inf), as a fit with max_bins 255 and missing values can make.
        let mut thresholds: Vec<f64> = (0..254).map(f64::from).collect();
        thresholds.push(f64::INFINITY);
        let model = comb(&thresholds);
        model.validate(1, 0).unwrap();
        let model = model.compiled();
        for x in [-1.0, 0.0, 0.5, 253.0, 253.5, 1e300, f64::INFINITY, f64::NAN] {
            assert_eq!(model.scores(&[x]), walked_scores(&model, &[x]), "at {x}");
        }
        // 255 thresholds below +inf would need a code for 255 of them.
        let too_many: Vec<f64> = (0..255).map(f64::from).collect();
        let refused = comb(&too_many).validate(1, 0).unwrap_err();
        assert!(
            refused.message.contains("more thresholds than bins"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn more_features_than_a_split_names_are_refused() {
        let mut wide = comb(&[0.5]);
        wide.importances = vec![0.0; MAX_FEATURES + 1];
        let refused = wide.validate(MAX_FEATURES + 1, 0).unwrap_err();
        assert!(
            refused.message.contains("more features"),
            "{}",
            refused.message
        );
        // And a fit refuses them before it starts.
        let width = MAX_FEATURES + 1;
        let records = (0..4 * width).map(|v| (v % 7) as f64).collect();
        let d = Dataset::new(
            (0..width).map(|j| format!("x{j}")).collect(),
            records,
            RawLabels::Values(vec![0.0, 1.0, 2.0, 3.0]),
        )
        .unwrap();
        let refused = fit_with(
            &d,
            serde_json::Value::Null,
            1,
            &MemoryBudget::unlimited(),
            &Interrupts::none(),
        )
        .unwrap_err();
        assert!(
            refused.message.contains("at most 65536 features"),
            "{}",
            refused.message
        );
    }

    /// The sum, in tree order, of the leaves `walk` reaches: the stored
    /// trees' own reading of `x`, which the compiled layout must match.
    fn walked_scores(model: &HistGbm, x: &[f64]) -> Vec<f64> {
        let k = model.outputs();
        (0..k)
            .map(|o| {
                let mut sum = 0.0;
                for tree in model.trees.iter().skip(o).step_by(k) {
                    let mut leaf = 0;
                    tree.walk(x, model.max_bins, |node, feature| {
                        if feature.is_none() {
                            leaf = node;
                        }
                    });
                    sum += tree.values[leaf];
                }
                model.init[o] + sum
            })
            .collect()
    }

    #[test]
    fn the_compiled_trees_give_the_stored_trees_scores_at_every_edge() {
        for task in [Task::Classification, Task::Regression] {
            let d = data(3_000, task);
            let model = fit_plain(&d, serde_json::json!({"max_bins": 40}), 1);
            // Every threshold, and the values just either side of it.
            let mut numbers = vec![f64::NAN, -1e300, 1e300];
            for node in model.trees.iter().flat_map(|t| &t.nodes) {
                if node.left != 0 && node.category_set == NUMERIC_SPLIT {
                    let t = node.threshold;
                    numbers.extend([t, t.next_down(), t.next_up()]);
                }
            }
            // Every category, unseen ones, and indices outside the bins.
            let categories = [
                f64::NAN,
                -1.0,
                0.0,
                3.0,
                4.0,
                11.0,
                12.0,
                39.0,
                40.0,
                254.0,
                255.0,
                1e9,
            ];
            for (i, &x0) in numbers.iter().enumerate() {
                for &x1 in &categories {
                    let x = [x0, x1, numbers[(i * 7) % numbers.len()]];
                    let compiled = model.scores(&x);
                    let walked = walked_scores(&model, &x);
                    let same = compiled
                        .iter()
                        .zip(&walked)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{task:?} at {x:?}: {compiled:?} against {walked:?}");
                }
            }
        }
    }
}
