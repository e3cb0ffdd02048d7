//! Live metrics from labels that arrive after the predictions they judge.
//! A model's counts are sums over the labelled rows as they are now (the
//! attached tables are read each time), so a label that changed, or that
//! arrived while no trigger watched, counts once, with its latest value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::metrics::Metrics;
use super::{MlError, MlResult, Task};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveCounts {
    /// Labelled rows per predicted class, then per actual class.
    Classes {
        pairs: BTreeMap<String, BTreeMap<String, i64>>,
    },
    /// What R², MAE and RMSE are computed from.
    Values {
        rows: i64,
        sum_squared_error: f64,
        sum_absolute_error: f64,
        sum_actual: f64,
        sum_actual_squared: f64,
    },
}

/// What a regressor's live metrics are computed from, over some rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ValueSums {
    pub rows: i64,
    pub squared_error: f64,
    pub absolute_error: f64,
    pub actual: f64,
    pub actual_squared: f64,
}

impl LiveCounts {
    pub fn new(task: Task) -> Self {
        match task {
            Task::Classification => LiveCounts::Classes {
                pairs: BTreeMap::new(),
            },
            Task::Regression => LiveCounts::Values {
                rows: 0,
                sum_squared_error: 0.0,
                sum_absolute_error: 0.0,
                sum_actual: 0.0,
                sum_actual_squared: 0.0,
            },
        }
    }

    /// Counts `sign` labelled predictions of `predicted` for `actual`
    /// (a negative `sign` takes them back). A regressor's prediction and
    /// label are numbers written as text.
    pub fn count(&mut self, predicted: &str, actual: &str, sign: i64) -> MlResult<()> {
        match self {
            LiveCounts::Classes { pairs } => {
                let cell = pairs
                    .entry(predicted.to_string())
                    .or_default()
                    .entry(actual.to_string())
                    .or_default();
                *cell += sign;
                if *cell == 0 {
                    let row = pairs.get_mut(predicted).expect("entered above");
                    row.remove(actual);
                    if row.is_empty() {
                        pairs.remove(predicted);
                    }
                }
            }
            LiveCounts::Values {
                rows,
                sum_squared_error,
                sum_absolute_error,
                sum_actual,
                sum_actual_squared,
            } => {
                let number = |text: &str| {
                    text.parse::<f64>()
                        .map_err(|_| MlError::invalid(format!("\"{text}\" is not a number")))
                };
                let (p, y) = (number(predicted)?, number(actual)?);
                // A NaN or infinite label (or estimate) cannot be scored;
                // it is not counted, coming or going.
                if !(p.is_finite() && y.is_finite()) {
                    return Ok(());
                }
                // Plain sums, so rows can be counted in any order.
                let s = sign as f64;
                *rows += sign;
                *sum_squared_error += s * (p - y) * (p - y);
                *sum_absolute_error += s * (p - y).abs();
                *sum_actual += s * y;
                *sum_actual_squared += s * y * y;
            }
        }
        Ok(())
    }

    /// Adds a regressor's sums over `rows` more labelled rows (summed
    /// elsewhere, by the database): finite estimates and labels only.
    pub fn add_sums(&mut self, more: ValueSums) -> MlResult<()> {
        let LiveCounts::Values {
            rows,
            sum_squared_error,
            sum_absolute_error,
            sum_actual,
            sum_actual_squared,
        } = self
        else {
            return Err(MlError::invalid("sums of errors describe a regressor"));
        };
        *rows += more.rows;
        *sum_squared_error += more.squared_error;
        *sum_absolute_error += more.absolute_error;
        *sum_actual += more.actual;
        *sum_actual_squared += more.actual_squared;
        Ok(())
    }

    pub fn rows(&self) -> i64 {
        match self {
            LiveCounts::Classes { pairs } => pairs.values().flat_map(|r| r.values()).sum(),
            LiveCounts::Values { rows, .. } => *rows,
        }
    }

    /// Classification: accuracy and macro F1 over the classes predicted or
    /// seen (scikit-learn's definitions, as at training). Regression: R²,
    /// MAE and RMSE. A metric that is not defined (no rows, or R² of a
    /// constant label) is left out.
    pub fn metrics(&self) -> Metrics {
        let mut out = Metrics::new();
        let n = self.rows();
        if n <= 0 {
            return out;
        }
        match self {
            LiveCounts::Classes { pairs } => {
                let mut classes: Vec<&str> = pairs.keys().map(String::as_str).collect();
                classes.extend(pairs.values().flat_map(|r| r.keys().map(String::as_str)));
                classes.sort_unstable();
                classes.dedup();
                let count =
                    |p: &str, a: &str| pairs.get(p).and_then(|r| r.get(a)).copied().unwrap_or(0);
                let mut correct = 0;
                let mut f1_sum = 0.0;
                for &c in &classes {
                    let tp = count(c, c);
                    let predicted: i64 = pairs.get(c).map_or(0, |r| r.values().sum());
                    let actual: i64 = pairs.values().map(|r| r.get(c).copied().unwrap_or(0)).sum();
                    correct += tp;
                    let denominator = predicted + actual;
                    if denominator > 0 {
                        f1_sum += 2.0 * tp as f64 / denominator as f64;
                    }
                }
                out.insert("accuracy".into(), correct as f64 / n as f64);
                out.insert("f1".into(), f1_sum / classes.len() as f64);
            }
            LiveCounts::Values {
                sum_squared_error,
                sum_absolute_error,
                sum_actual,
                sum_actual_squared,
                ..
            } => {
                let rows = n as f64;
                let total = sum_actual_squared - sum_actual * sum_actual / rows;
                if total > 1e-12 * sum_actual_squared.max(1.0) {
                    out.insert("r2".into(), 1.0 - sum_squared_error / total);
                }
                out.insert("mae".into(), sum_absolute_error / rows);
                out.insert("rmse".into(), (sum_squared_error.max(0.0) / rows).sqrt());
            }
        }
        out
    }
}

/// Whether a canary's challenger `model_id` serves `key`: a stable hash of
/// the key (and of the challenger, so each trial splits the keys afresh),
/// as a fraction of 1, below `traffic`. FNV-1a and a final mix, written
/// out because the split must never change between versions or machines.
pub fn canary_serves(key: &str, model_id: i64, traffic: f64) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in model_id.to_le_bytes().iter().chain(key.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    ((hash >> 11) as f64 / (1u64 << 53) as f64) < traffic
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::metrics;

    #[test]
    fn a_canary_takes_its_share_of_keys_and_each_key_keeps_its_model() {
        let served = (0..100_000)
            .filter(|k| canary_serves(&k.to_string(), 7, 0.1))
            .count();
        // Within four binomial standard deviations (95 rows).
        assert!((served as i64 - 10_000).abs() < 380, "{served}");
        assert!((0..1000).all(
            |k| canary_serves(&k.to_string(), 7, 0.1) == canary_serves(&k.to_string(), 7, 0.1)
        ));
        // Another challenger splits the keys anew.
        let same = (0..10_000)
            .filter(|k| {
                canary_serves(&k.to_string(), 7, 0.5) == canary_serves(&k.to_string(), 8, 0.5)
            })
            .count();
        assert!((4_600..5_400).contains(&same), "{same}");
        // The split is fixed for good: these keys go where they went.
        assert_eq!(
            (0..8)
                .map(|k| canary_serves(&k.to_string(), 42, 0.5))
                .collect::<Vec<_>>(),
            [true, true, false, false, false, true, true, true]
        );
    }

    #[test]
    fn class_counts_give_the_test_split_metrics() {
        let truth = [0usize, 0, 1, 1, 2, 2, 2];
        let predicted = [0usize, 1, 1, 1, 2, 0, 2];
        let names = ["a", "b", "c"];
        let mut live = LiveCounts::new(Task::Classification);
        for (t, p) in truth.iter().zip(&predicted) {
            live.count(names[*p], names[*t], 1).unwrap();
        }
        let offline = metrics::classification(&truth, &predicted, 3, None);
        let online = live.metrics();
        for key in ["accuracy", "f1"] {
            assert!(
                (online[key] - offline[key]).abs() < 1e-12,
                "{key}: {online:?} {offline:?}"
            );
        }
    }

    #[test]
    fn a_changed_label_counts_once_with_its_latest_value() {
        let mut live = LiveCounts::new(Task::Classification);
        live.count("yes", "no", 1).unwrap();
        live.count("yes", "yes", 1).unwrap();
        // The first row's label is corrected to "yes".
        live.count("yes", "no", -1).unwrap();
        live.count("yes", "yes", 1).unwrap();
        assert_eq!(live.rows(), 2);
        assert_eq!(live.metrics()["accuracy"], 1.0);
        assert_eq!(
            live,
            LiveCounts::Classes {
                pairs: [("yes".to_string(), [("yes".to_string(), 2)].into())].into()
            }
        );
    }

    #[test]
    fn value_sums_give_the_test_split_metrics_and_return_to_zero() {
        let truth = [1.0, 2.0, 3.5, 4.0, 8.0];
        let predicted = [1.5, 2.0, 3.0, 5.0, 7.0];
        let mut live = LiveCounts::new(Task::Regression);
        for (t, p) in truth.iter().zip(&predicted) {
            live.count(&p.to_string(), &t.to_string(), 1).unwrap();
        }
        let offline = metrics::regression(&truth, &predicted);
        let online = live.metrics();
        for key in ["r2", "mae", "rmse"] {
            assert!(
                (online[key] - offline[key]).abs() < 1e-12,
                "{key}: {online:?} {offline:?}"
            );
        }
        // Taken back in another order than counted: nothing is left.
        for (t, p) in truth.iter().zip(&predicted).rev() {
            live.count(&p.to_string(), &t.to_string(), -1).unwrap();
        }
        assert_eq!(live.rows(), 0);
        assert!(live.metrics().is_empty());
        assert!(live.count("x", "1", 1).is_err());
        // Not finite: not counted.
        live.count("NaN", "1", 1).unwrap();
        live.count("1", "inf", 1).unwrap();
        assert_eq!(live.rows(), 0);
    }

    #[test]
    fn a_changed_label_folded_before_the_row_it_changes_counts_the_same() {
        // Log row 1 adds (1, 1); log row 2 takes it back and adds (1, 5).
        let mut in_order = LiveCounts::new(Task::Regression);
        let mut reversed = LiveCounts::new(Task::Regression);
        let rows: [&[(&str, &str, i64)]; 2] = [&[("1", "1", 1)], &[("1", "1", -1), ("1", "5", 1)]];
        for row in rows {
            for &(p, y, sign) in row {
                in_order.count(p, y, sign).unwrap();
            }
        }
        for row in rows.iter().rev() {
            for &(p, y, sign) in row.iter() {
                reversed.count(p, y, sign).unwrap();
            }
        }
        assert_eq!(in_order.metrics(), reversed.metrics());
        assert_eq!(reversed.metrics()["rmse"], 4.0);
    }
}
