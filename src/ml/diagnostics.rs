//! What a model did on its test rows, kept with it so a report can draw
//! it without reading the data again: a confusion matrix and a calibration
//! table for classifiers, residuals for regressors, and the explanation of
//! one typical row (each input at its training median, or its most common
//! category), a row made from statistics, so no training row is kept.

use serde::{Deserialize, Serialize};

use super::dataset::{ColumnKind, Dataset, LabelEncoding, Labels};
use super::model::{Model, Predicted};
use super::preprocess::Value;
use super::{Interrupts, MlResult};

/// Calibration bins over predicted probabilities in [0, 1].
const CALIBRATION_BINS: usize = 10;
/// Steps each way of the predicted-against-actual grid.
const GRID: usize = 24;
/// Classes a confusion matrix is kept for at most (k² counts).
pub const MAX_CONFUSION_CLASSES: usize = 50;
/// Bins of the residual histogram.
const RESIDUAL_BINS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub test_rows: usize,
    /// A classifier's classes (0 for a regressor).
    #[serde(default)]
    pub classes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Confusion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residuals: Option<Residuals>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Example>,
}

impl Diagnostics {
    /// Whether its parts agree with themselves: a k × k matrix, one more
    /// edge than counts, cells on the grid. What training writes always
    /// does; a record edited by hand may not, and a report refuses it.
    pub fn is_consistent(&self) -> bool {
        let confusion = self.confusion.as_ref().is_none_or(|c| {
            c.counts.len() == c.labels.len() && c.counts.iter().all(|r| r.len() == c.labels.len())
        });
        let residuals = self.residuals.as_ref().is_none_or(|r| {
            (r.edges.len() == r.counts.len() + 1 || r.edges.is_empty() && r.counts.is_empty())
                && r.grid > 0
                && r.cells.iter().all(|&(p, a, _)| p < r.grid && a < r.grid)
        });
        let example = self
            .example
            .as_ref()
            .is_none_or(|e| e.contributions.len() == e.inputs.len());
        confusion && residuals && example
    }
}

/// `counts[t][p]`: test rows of true class `labels[t]` predicted `labels[p]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

/// For a binary classifier, the predicted probability of the second class
/// against how often it was the truth; for more classes, the top class's
/// probability against how often the top class was right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub of: String,
    pub bins: Vec<CalibrationBin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lo: f64,
    pub hi: f64,
    pub rows: u64,
    pub mean_predicted: f64,
    pub observed: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Residuals {
    /// The range both predicted and actual values fall in, cut into `grid`
    /// equal steps each way; `cells` are (predicted step, actual step,
    /// test rows), non-empty cells only.
    pub lo: f64,
    pub hi: f64,
    pub grid: usize,
    pub cells: Vec<(usize, usize, u64)>,
    /// Histogram of actual − predicted over every test row: `edges` has one
    /// more entry than `counts`.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// One prediction split into contributions (see `Model::explain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// (input column, its value as text), in input order.
    pub inputs: Vec<(String, String)>,
    pub prediction: String,
    pub explains: String,
    pub bias: f64,
    /// Per input column, in input order.
    pub contributions: Vec<f64>,
}

/// A typical raw row of `data`'s `rows`: each number at its median, each
/// category at its most common value; missing where every value is.
pub struct TypicalRow {
    names: Vec<String>,
    kinds: Vec<ColumnKind>,
    values: Vec<Option<Typical>>,
}

enum Typical {
    Number(f64),
    Text(String),
}

impl TypicalRow {
    pub fn of(data: &Dataset, rows: &[usize], interrupts: &Interrupts<'_>) -> MlResult<Self> {
        let mut values = Vec::with_capacity(data.width());
        let mut column = Vec::with_capacity(rows.len());
        for (j, kind) in data.kinds.iter().enumerate() {
            interrupts.check()?;
            column.clear();
            column.extend(rows.iter().map(|&i| data.row(i)[j]).filter(|v| !v.is_nan()));
            values.push(match kind {
                ColumnKind::Categorical => {
                    let mut counts = vec![0usize; data.dictionaries[j].len()];
                    for &v in &column {
                        if let Some(c) = counts.get_mut(v as usize) {
                            *c += 1;
                        }
                    }
                    // The first of the most common (dictionaries are sorted).
                    let best = counts
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                        .filter(|(_, &c)| c > 0);
                    best.map(|(k, _)| Typical::Text(data.dictionaries[j][k].clone()))
                }
                _ if column.is_empty() => None,
                _ => {
                    // The lower median, so a boolean stays 0 or 1; found in
                    // linear time, not by sorting millions of values.
                    let middle = (column.len() - 1) / 2;
                    let (_, median, _) = column.select_nth_unstable_by(middle, f64::total_cmp);
                    Some(Typical::Number(*median))
                }
            });
        }
        Ok(TypicalRow {
            names: data.feature_names.clone(),
            kinds: data.kinds.clone(),
            values,
        })
    }

    /// Explains the model's prediction for this row, its inputs matched by
    /// name. `None` if the model takes an input this row lacks, or its
    /// predictions have no additive explanation.
    fn explain(&self, model: &Model) -> Option<Example> {
        let mut inputs = Vec::new();
        let mut values = Vec::new();
        for name in model.input_names() {
            let j = self.names.iter().position(|n| n == name)?;
            let (value, shown) = match (&self.values[j], self.kinds[j]) {
                (None, _) => (Value::Missing, "(missing)".to_string()),
                (Some(Typical::Text(t)), _) => (Value::Text(t), t.clone()),
                (Some(Typical::Number(v)), ColumnKind::Boolean) => {
                    (Value::Number(*v), (*v != 0.0).to_string())
                }
                (Some(Typical::Number(v)), ColumnKind::Timestamp) => {
                    (Value::Number(*v), format!("{v} s since 1970"))
                }
                (Some(Typical::Number(v)), _) => (Value::Number(*v), format!("{v}")),
            };
            values.push(value);
            inputs.push((name.to_string(), shown));
        }
        let mut x = Vec::new();
        // The example is a picture, never a reason to fail a train: a row
        // the preprocessing refuses (a column never seen, with `impute:
        // error`) has none, and naive Bayes, AdaBoost, kNN and SVM
        // predictions do not split into contributions.
        model.encode(&values, &mut x).ok()?;
        let e = model.explain(&x).ok()?;
        let finite = e.bias.is_finite() && e.contributions.iter().all(|c| c.is_finite());
        finite.then(|| Example {
            inputs,
            prediction: model.predict_label(&x),
            explains: e.explains,
            bias: e.bias,
            contributions: e.contributions,
        })
    }
}

/// Summarises `predicted`, the model's predictions for `rows` of the
/// encoded `data` it was trained with, with `typical`'s explanation. Only
/// finite numbers are kept, so the result is always valid JSON.
pub(crate) fn diagnose(
    model: &Model,
    encoded: &Dataset,
    rows: &[usize],
    predicted: &Predicted,
    typical: &TypicalRow,
) -> Diagnostics {
    let mut d = Diagnostics {
        test_rows: rows.len(),
        example: typical.explain(model),
        ..Diagnostics::default()
    };
    match &encoded.labels {
        Labels::Classes { encoding, index } => {
            let k = encoding.classes.len();
            d.classes = k;
            if k <= MAX_CONFUSION_CLASSES {
                let mut counts = vec![vec![0u64; k]; k];
                for (&i, &p) in rows.iter().zip(&predicted.values) {
                    counts[index[i]][(p as usize).min(k - 1)] += 1;
                }
                d.confusion = Some(Confusion {
                    labels: encoding.classes.clone(),
                    counts,
                });
            }
            if let Some(probabilities) = &predicted.probabilities {
                d.calibration = calibration(k, encoding, index, rows, predicted, probabilities);
            }
        }
        Labels::Values(values) => {
            let pairs: Vec<(f64, f64)> = rows
                .iter()
                .zip(&predicted.values)
                .map(|(&i, &p)| (p, values[i]))
                .filter(|(p, a)| p.is_finite() && a.is_finite())
                .collect();
            d.residuals = Some(residuals(&pairs));
        }
    }
    d
}

fn calibration(
    k: usize,
    encoding: &LabelEncoding,
    index: &[usize],
    rows: &[usize],
    predicted: &Predicted,
    probabilities: &[Vec<f64>],
) -> Option<Calibration> {
    let mut bins = vec![(0u64, 0.0f64, 0.0f64); CALIBRATION_BINS];
    for ((&i, &p), proba) in rows.iter().zip(&predicted.values).zip(probabilities) {
        let (truth, class) = (index[i], p as usize);
        let (confidence, hit) = if k == 2 {
            (proba.get(1).copied().unwrap_or(f64::NAN), truth == 1)
        } else {
            (
                proba.get(class).copied().unwrap_or(f64::NAN),
                truth == class,
            )
        };
        if !(0.0..=1.0).contains(&confidence) {
            continue;
        }
        let b = ((confidence * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        bins[b].0 += 1;
        bins[b].1 += confidence;
        bins[b].2 += f64::from(u8::from(hit));
    }
    let width = 1.0 / CALIBRATION_BINS as f64;
    let bins: Vec<CalibrationBin> = bins
        .into_iter()
        .enumerate()
        .filter(|(_, (rows, _, _))| *rows > 0)
        .map(|(b, (rows, sum_p, hits))| CalibrationBin {
            lo: b as f64 * width,
            hi: (b + 1) as f64 * width,
            rows,
            mean_predicted: sum_p / rows as f64,
            observed: hits / rows as f64,
        })
        .collect();
    (!bins.is_empty()).then(|| Calibration {
        of: if k == 2 {
            format!("the probability of \"{}\"", encoding.classes[1])
        } else {
            "the predicted class's probability".to_string()
        },
        bins,
    })
}

/// (predicted, actual) pairs as counts on a grid over their common range,
/// not as rows (a reader of the model may not read its source), and the
/// histogram of actual − predicted.
fn residuals(pairs: &[(f64, f64)]) -> Residuals {
    let (lo, hi) = pairs
        .iter()
        .flat_map(|&(p, a)| [p, a])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let mut cells = std::collections::BTreeMap::new();
    if lo.is_finite() {
        let cell = |v: f64| ((share(v, lo, hi) * GRID as f64) as usize).min(GRID - 1);
        for &(p, a) in pairs {
            *cells.entry((cell(p), cell(a))).or_insert(0u64) += 1;
        }
    }
    let differences: Vec<f64> = pairs
        .iter()
        .map(|(p, a)| a - p)
        .filter(|r| r.is_finite())
        .collect();
    let (edges, counts) = histogram(&differences, RESIDUAL_BINS);
    Residuals {
        lo: if lo.is_finite() { lo } else { 0.0 },
        hi: if hi.is_finite() { hi } else { 0.0 },
        grid: GRID,
        cells: cells.into_iter().map(|((p, a), n)| (p, a, n)).collect(),
        edges,
        counts,
    }
}

/// Where `v` lies between `lo` and `hi`, from 0 to 1, without overflow
/// however far apart they are (0 when they are equal).
pub(crate) fn share(v: f64, lo: f64, hi: f64) -> f64 {
    let span = hi / 2.0 - lo / 2.0;
    if span > 0.0 {
        ((v / 2.0 - lo / 2.0) / span).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Equal-width bins from the least to the greatest of `values` (finite).
fn histogram(values: &[f64], bins: usize) -> (Vec<f64>, Vec<u64>) {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.is_empty() {
        return (Vec::new(), Vec::new());
    }
    // Equal values: one bin's width of room above them, short of overflow.
    let hi = if hi > lo {
        hi
    } else {
        lo + (f64::MAX - lo).min(lo.abs().max(1.0))
    };
    let edges = (0..=bins)
        .map(|b| {
            let t = b as f64 / bins as f64;
            lo * (1.0 - t) + hi * t
        })
        .collect();
    let mut counts = vec![0u64; bins];
    for &v in values {
        counts[((share(v, lo, hi) * bins as f64) as usize).min(bins - 1)] += 1;
    }
    (edges, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{LabelKind, RawLabels};
    use crate::ml::model::{test_split, train_with_defaults};

    fn two_moons() -> Dataset {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..400 {
            let x = (i % 20) as f64;
            let y = (i / 20) as f64;
            records.extend([x, y]);
            labels.push(if x + y > 19.0 { "yes" } else { "no" }.to_string());
        }
        Dataset::new(
            vec!["x".into(), "y".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap()
    }

    #[test]
    fn a_classifier_has_a_confusion_matrix_over_its_test_rows_and_a_calibration_table() {
        let data = two_moons();
        let trained = train_with_defaults(&data, "decision_tree", 7, 1);
        let d = trained.diagnostics;
        let split = test_split(&data, 7);
        assert_eq!(d.test_rows, split.test.len());
        let confusion = d.confusion.expect("a confusion matrix");
        assert_eq!(confusion.labels, vec!["no", "yes"]);
        let total: u64 = confusion.counts.iter().flatten().sum();
        assert_eq!(total as usize, split.test.len());
        // Each row counts the test rows of its true class (not transposed).
        let Labels::Classes { index, .. } = &data.labels else {
            unreachable!()
        };
        for (t, row) in confusion.counts.iter().enumerate() {
            let rows = split.test.iter().filter(|&&i| index[i] == t).count();
            assert_eq!(row.iter().sum::<u64>() as usize, rows, "class {t}");
        }
        // The diagonal is the accuracy the metrics recorded.
        let right = confusion.counts[0][0] + confusion.counts[1][1];
        let accuracy = right as f64 / total as f64;
        assert!((accuracy - trained.metrics["accuracy"]).abs() < 1e-12);
        let calibration = d.calibration.expect("a calibration table");
        assert_eq!(calibration.of, "the probability of \"yes\"");
        let rows: u64 = calibration.bins.iter().map(|b| b.rows).sum();
        assert_eq!(rows as usize, split.test.len());
        for b in &calibration.bins {
            assert!(b.lo <= b.mean_predicted && b.mean_predicted <= b.hi + 1e-12);
            assert!((0.0..=1.0).contains(&b.observed));
        }
        // The typical row is the medians, and its contributions add up.
        let example = d.example.expect("an example");
        assert_eq!(
            example.inputs,
            vec![("x".into(), "9".into()), ("y".into(), "9".into())]
        );
        assert_eq!(example.prediction, "no");
    }

    #[test]
    fn a_regressor_has_residuals_that_count_every_test_row() {
        let mut records = Vec::new();
        let mut values = Vec::new();
        for i in 0..300 {
            let x = i as f64;
            records.push(x);
            values.push(3.0 * x + (i % 7) as f64);
        }
        let data = Dataset::new(vec!["x".into()], records, RawLabels::Values(values)).unwrap();
        let trained = train_with_defaults(&data, "linear_regression", 3, 1);
        let r = trained.diagnostics.residuals.expect("residuals");
        assert_eq!(
            r.counts.iter().sum::<u64>() as usize,
            trained.diagnostics.test_rows
        );
        assert_eq!(r.edges.len(), r.counts.len() + 1);
        // The grid counts every test row too, inside the grid.
        assert_eq!(
            r.cells.iter().map(|c| c.2).sum::<u64>() as usize,
            trained.diagnostics.test_rows
        );
        assert!(r
            .cells
            .iter()
            .all(|&(p, a, n)| p < r.grid && a < r.grid && n > 0));
        assert!(r.lo < r.hi);
        // A good fit lies near the diagonal.
        let near: u64 = r
            .cells
            .iter()
            .filter(|c| c.0.abs_diff(c.1) <= 1)
            .map(|c| c.2)
            .sum();
        assert!(
            near as usize * 10 >= trained.diagnostics.test_rows * 9,
            "{r:?}"
        );
        assert!(trained.diagnostics.confusion.is_none());
        assert_eq!(trained.diagnostics.classes, 0);
        let example = trained.diagnostics.example.expect("an example");
        let sum = example.bias + example.contributions.iter().sum::<f64>();
        assert!((sum - example.prediction.parse::<f64>().unwrap()).abs() < 1e-6);
    }

    #[test]
    fn every_algorithm_records_diagnostics_and_only_additive_ones_an_example() {
        use crate::ml::algorithms::ALGORITHMS;
        use crate::ml::Task;
        let mut records = Vec::new();
        let mut values = Vec::new();
        for i in 0..200 {
            records.extend([(i % 20) as f64, (i / 20) as f64]);
            values.push((i % 20) as f64 * 2.0 + (i / 20) as f64);
        }
        let regression = Dataset::new(
            vec!["x".into(), "y".into()],
            records,
            RawLabels::Values(values),
        )
        .unwrap();
        for spec in ALGORITHMS {
            for task in spec.tasks.iter().map(|t| t.task) {
                let data = match task {
                    Task::Classification => two_moons(),
                    Task::Regression => regression.clone(),
                };
                let d = train_with_defaults(&data, spec.name, 7, 1).diagnostics;
                let name = format!("{} {task:?}", spec.name);
                match task {
                    Task::Classification => assert!(d.confusion.is_some(), "{name}"),
                    Task::Regression => assert!(d.residuals.is_some(), "{name}"),
                }
                let additive = !matches!(spec.name, "gaussian_nb" | "adaboost" | "knn" | "svm");
                assert_eq!(d.example.is_some(), additive, "{name}");
                assert!(d.is_consistent(), "{name}");
                // Always valid JSON, read back as written.
                let json = serde_json::to_value(&d).unwrap();
                assert_eq!(
                    serde_json::from_value::<Diagnostics>(json).unwrap(),
                    d,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn a_multiclass_calibration_compares_the_predicted_class_with_how_often_it_was_right() {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..300 {
            records.push((i % 30) as f64);
            labels.push(["a", "b", "c"][(i % 30) / 10].to_string());
        }
        let data = Dataset::new(
            vec!["x".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap();
        let trained = train_with_defaults(&data, "decision_tree", 7, 1);
        let calibration = trained
            .diagnostics
            .calibration
            .expect("a calibration table");
        assert_eq!(calibration.of, "the predicted class's probability");
        // The classes are separable: the tree is sure and right.
        let rows: u64 = calibration.bins.iter().map(|b| b.rows).sum();
        let right: f64 = calibration
            .bins
            .iter()
            .map(|b| b.observed * b.rows as f64)
            .sum();
        assert!((right / rows as f64 - trained.metrics["accuracy"]).abs() < 1e-9);
        assert_eq!(trained.diagnostics.classes, 3);
    }

    #[test]
    fn a_confusion_matrix_is_kept_only_for_a_bounded_number_of_classes() {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..(MAX_CONFUSION_CLASSES + 1) * 4 {
            records.push(i as f64);
            labels.push(format!("c{}", i % (MAX_CONFUSION_CLASSES + 1)));
        }
        let data = Dataset::new(
            vec!["x".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap();
        let d = train_with_defaults(&data, "decision_tree", 7, 1).diagnostics;
        assert_eq!(d.classes, MAX_CONFUSION_CLASSES + 1);
        assert!(d.confusion.is_none());
    }

    #[test]
    fn residuals_of_huge_or_equal_values_stay_finite() {
        let r = residuals(&[(1.7e308, -1.7e308), (0.0, 1.7e308)]);
        assert!(r.lo.is_finite() && r.hi.is_finite());
        assert_eq!(r.cells.iter().map(|c| c.2).sum::<u64>(), 2);
        let r = residuals(&[(2.0, 2.0), (2.0, 2.0)]);
        assert_eq!(r.cells, vec![(0, 0, 2)]);
        let r = residuals(&[]);
        assert!(r.cells.is_empty() && r.counts.is_empty());
    }

    #[test]
    fn histogram_of_equal_values_has_one_full_bin() {
        let (edges, counts) = histogram(&[2.0, 2.0], 4);
        assert_eq!(edges.len(), 5);
        assert_eq!(counts, vec![2, 0, 0, 0]);
        assert_eq!(histogram(&[], 4), (vec![], vec![]));
    }
}
