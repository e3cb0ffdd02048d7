//! What a model did on its test rows, kept with it so a report can draw
//! it without reading the data again: a confusion matrix and a calibration
//! table for classifiers, residuals for regressors, and the explanation of
//! one typical row (each input at its training median, or its most common
//! category), a row made from statistics, so no training row is kept.

use serde::{Deserialize, Serialize};

use super::dataset::{ColumnKind, Dataset, Labels};
use super::model::Model;
use super::preprocess::Value;
use super::{Interrupts, MlErrorKind, MlResult};

/// Calibration bins over predicted probabilities in [0, 1].
const CALIBRATION_BINS: usize = 10;
/// Residual points kept at most (evenly spaced over the test rows).
const RESIDUAL_POINTS: usize = 400;
/// Bins of the residual histogram.
const RESIDUAL_BINS: usize = 20;
/// Rows between two interrupt checks.
const CHECK_EVERY: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub test_rows: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Confusion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residuals: Option<Residuals>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Example>,
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
    /// (predicted, actual) for up to `RESIDUAL_POINTS` test rows.
    pub points: Vec<(f64, f64)>,
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
    fn explain(&self, model: &Model) -> MlResult<Option<Example>> {
        let mut inputs = Vec::new();
        let mut values = Vec::new();
        for name in model.input_names() {
            let Some(j) = self.names.iter().position(|n| n == name) else {
                return Ok(None);
            };
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
        // A made-up row the preprocessing refuses (a column never seen,
        // with `impute: error`) has no example; training goes on.
        if model.encode(&values, &mut x).is_err() {
            return Ok(None);
        }
        // Naive Bayes, AdaBoost, kNN and SVM predictions do not split into
        // contributions: their reports show importances only.
        let e = match model.explain(&x) {
            Ok(e) => e,
            Err(e) if e.kind == MlErrorKind::Unsupported => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Example {
            inputs,
            prediction: model.predict_label(&x),
            explains: e.explains,
            bias: e.bias,
            contributions: e.contributions,
        }))
    }
}

/// Predicts `rows` of the encoded `data` (which the model was trained
/// with) and summarises them, with `typical`'s explanation.
pub fn diagnose(
    model: &Model,
    encoded: &Dataset,
    rows: &[usize],
    typical: &TypicalRow,
    interrupts: &Interrupts<'_>,
) -> MlResult<Diagnostics> {
    let predictor = model.estimator.predictor();
    let mut d = Diagnostics {
        test_rows: rows.len(),
        example: typical.explain(model)?,
        ..Diagnostics::default()
    };
    match &encoded.labels {
        Labels::Classes { encoding, index } => {
            let k = encoding.classes.len();
            let mut counts = vec![vec![0u64; k]; k];
            let mut bins = vec![(0u64, 0.0f64, 0.0f64); CALIBRATION_BINS];
            for (n, &i) in rows.iter().enumerate() {
                if n % CHECK_EVERY == 0 {
                    interrupts.check()?;
                }
                let x = encoded.row(i);
                let truth = index[i];
                let predicted = (predictor.predict(x) as usize).min(k - 1);
                counts[truth][predicted] += 1;
                if let Some(p) = predictor.predict_proba(x) {
                    let (confidence, hit) = if k == 2 {
                        (p[1], truth == 1)
                    } else {
                        (p.get(predicted).copied().unwrap_or(0.0), truth == predicted)
                    };
                    let b =
                        ((confidence * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
                    bins[b].0 += 1;
                    bins[b].1 += confidence;
                    bins[b].2 += f64::from(u8::from(hit));
                }
            }
            d.confusion = Some(Confusion {
                labels: encoding.classes.clone(),
                counts,
            });
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
            if !bins.is_empty() {
                d.calibration = Some(Calibration {
                    of: if k == 2 {
                        format!("the probability of \"{}\"", encoding.classes[1])
                    } else {
                        "the predicted class's probability".to_string()
                    },
                    bins,
                });
            }
        }
        Labels::Values(values) => {
            let mut predicted = Vec::with_capacity(rows.len());
            for (n, &i) in rows.iter().enumerate() {
                if n % CHECK_EVERY == 0 {
                    interrupts.check()?;
                }
                predicted.push(predictor.predict(encoded.row(i)));
            }
            let step = rows.len().div_ceil(RESIDUAL_POINTS).max(1);
            let points = rows
                .iter()
                .zip(&predicted)
                .step_by(step)
                .map(|(&i, &p)| (p, values[i]))
                .collect();
            let residuals: Vec<f64> = rows
                .iter()
                .zip(&predicted)
                .map(|(&i, &p)| values[i] - p)
                .filter(|r| r.is_finite())
                .collect();
            let (edges, counts) = histogram(&residuals, RESIDUAL_BINS);
            d.residuals = Some(Residuals {
                points,
                edges,
                counts,
            });
        }
    }
    Ok(d)
}

/// Equal-width bins from the least to the greatest value.
fn histogram(values: &[f64], bins: usize) -> (Vec<f64>, Vec<u64>) {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let edges = (0..=bins).map(|b| lo + b as f64 * width).collect();
    let mut counts = vec![0u64; bins];
    for &v in values {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
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
        assert!(!r.points.is_empty() && r.points.len() <= RESIDUAL_POINTS);
        assert!(trained.diagnostics.confusion.is_none());
        let example = trained.diagnostics.example.expect("an example");
        let sum = example.bias + example.contributions.iter().sum::<f64>();
        assert!((sum - example.prediction.parse::<f64>().unwrap()).abs() < 1e-6);
    }

    #[test]
    fn a_model_without_additive_explanations_has_diagnostics_and_no_example() {
        let trained = train_with_defaults(&two_moons(), "knn", 7, 1);
        assert!(trained.diagnostics.confusion.is_some());
        assert!(trained.diagnostics.example.is_none());
    }

    #[test]
    fn histogram_of_equal_values_has_one_full_bin() {
        let (edges, counts) = histogram(&[2.0, 2.0], 4);
        assert_eq!(edges.len(), 5);
        assert_eq!(counts, vec![2, 0, 0, 0]);
        assert_eq!(histogram(&[], 4), (vec![], vec![]));
    }
}
