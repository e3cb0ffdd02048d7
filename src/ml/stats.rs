//! Per-column statistics of a training snapshot. Drift monitoring compares
//! new data against these, so they are stored with every model.

use serde::{Deserialize, Deserializer, Serialize};

use super::dataset::{ColumnKind, Dataset, Labels};
use super::{Interrupts, MlResult};

pub const QUANTILES: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericStats {
    pub count: usize,
    pub nulls: usize,
    // A column with no values has NaN statistics, which JSON writes as null.
    #[serde(deserialize_with = "nan_if_null")]
    pub min: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub std: f64,
    /// Values at `QUANTILES`, linearly interpolated.
    #[serde(deserialize_with = "nans_if_null")]
    pub quantiles: Vec<f64>,
    /// Values at 0 %, 1 %, ..., 100 %: the training distribution, to
    /// compare recent values with (Kolmogorov-Smirnov). Absent from
    /// snapshots made before 0.2.0.
    #[serde(default)]
    pub percentiles: Vec<f64>,
    /// Decile bins for the population stability index: the distinct inner
    /// edges, and the share of training values in each bin (a value equal
    /// to an edge falls in the bin below it).
    #[serde(default)]
    pub bin_edges: Vec<f64>,
    #[serde(default)]
    pub bin_shares: Vec<f64>,
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nans_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// Which of the bins `edges` delimit `value` falls in.
pub fn bin_of(edges: &[f64], value: f64) -> usize {
    edges.partition_point(|&e| e < value)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryStats {
    pub count: usize,
    pub nulls: usize,
    /// (class, rows), in class order.
    pub frequencies: Vec<(String, usize)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnStats {
    Numeric(NumericStats),
    Category(CategoryStats),
}

pub fn numeric(values: &mut [f64], nulls: usize) -> NumericStats {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let quantile = |q: f64| {
        if n == 0 {
            return f64::NAN;
        }
        let pos = q * (n - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
    };
    let percentiles: Vec<f64> = if n == 0 {
        Vec::new()
    } else {
        (0..=100).map(|p| quantile(f64::from(p) / 100.0)).collect()
    };
    let mut bin_edges: Vec<f64> = (1..10)
        .filter_map(|d| percentiles.get(d * 10).copied())
        .collect();
    bin_edges.dedup();
    let mut bin_counts = vec![0usize; bin_edges.len() + 1];
    for &v in values.iter() {
        bin_counts[bin_of(&bin_edges, v)] += 1;
    }
    NumericStats {
        count: n,
        nulls,
        min: values.first().copied().unwrap_or(f64::NAN),
        max: values.last().copied().unwrap_or(f64::NAN),
        mean,
        std: var.sqrt(),
        quantiles: QUANTILES.iter().map(|&q| quantile(q)).collect(),
        percentiles,
        bin_edges,
        bin_shares: bin_counts
            .iter()
            .map(|&c| c as f64 / n.max(1) as f64)
            .collect(),
    }
}

/// Categories a snapshot lists by name, at most: the rest are counted
/// together, so a column of e-mail addresses or ids does not copy every
/// value into the catalog.
pub const MAX_LISTED_CATEGORIES: usize = 100;

/// The most frequent categories (ties in text order), in text order, then
/// "(other)" with the rest's rows when there are more.
fn most_frequent(texts: &[String], counts: &[usize]) -> Vec<(String, usize)> {
    let mut seen: Vec<(&String, usize)> = texts
        .iter()
        .zip(counts.iter().copied())
        .filter(|(_, c)| *c > 0)
        .collect();
    if seen.len() <= MAX_LISTED_CATEGORIES {
        return seen.into_iter().map(|(t, c)| (t.clone(), c)).collect();
    }
    seen.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let rest: usize = seen[MAX_LISTED_CATEGORIES..].iter().map(|(_, c)| c).sum();
    seen.truncate(MAX_LISTED_CATEGORIES);
    seen.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<(String, usize)> = seen.into_iter().map(|(t, c)| (t.clone(), c)).collect();
    out.push(("(other)".to_string(), rest));
    out
}

/// Statistics for every feature, then the label (named `label_name`), whose
/// NULL count is the unlabeled rows that training skipped.
/// Statistics of every column (one sort each), checking for interrupts
/// between columns.
pub fn describe(
    data: &Dataset,
    label_name: &str,
    unlabeled: usize,
    interrupts: &Interrupts<'_>,
) -> MlResult<Vec<(String, ColumnStats)>> {
    let width = data.width();
    let mut out: Vec<(String, ColumnStats)> = (0..width)
        .map(|j| {
            interrupts.check()?;
            let column = data.records.iter().skip(j).step_by(width);
            let stats = match data.kinds[j] {
                ColumnKind::Categorical => {
                    let mut freq = vec![0usize; data.dictionaries[j].len()];
                    let mut nulls = 0;
                    for &v in column {
                        match data.text(j, v) {
                            Some(_) => freq[v as usize] += 1,
                            None => nulls += 1,
                        }
                    }
                    ColumnStats::Category(CategoryStats {
                        count: freq.iter().sum(),
                        nulls,
                        frequencies: most_frequent(&data.dictionaries[j], &freq),
                    })
                }
                _ => {
                    let mut present: Vec<f64> = column.copied().filter(|v| !v.is_nan()).collect();
                    let nulls = data.n_rows() - present.len();
                    ColumnStats::Numeric(numeric(&mut present, nulls))
                }
            };
            Ok((data.feature_names[j].clone(), stats))
        })
        .collect::<MlResult<_>>()?;
    let label = match &data.labels {
        Labels::Classes { encoding, index } => {
            let mut freq = vec![0usize; encoding.classes.len()];
            for &i in index {
                freq[i] += 1;
            }
            ColumnStats::Category(CategoryStats {
                count: index.len(),
                nulls: unlabeled,
                frequencies: encoding.classes.iter().cloned().zip(freq).collect(),
            })
        }
        Labels::Values(values) => ColumnStats::Numeric(numeric(&mut values.clone(), unlabeled)),
    };
    out.push((label_name.to_string(), label));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{LabelKind, RawLabels};

    #[test]
    fn numeric_summary() {
        let s = numeric(&mut [4.0, 1.0, 3.0, 2.0, 5.0], 2);
        assert_eq!(
            (s.count, s.nulls, s.min, s.max, s.mean),
            (5, 2, 1.0, 5.0, 3.0)
        );
        assert!((s.std - 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.quantiles, vec![1.2, 2.0, 3.0, 4.0, 4.8]);
    }

    #[test]
    fn only_the_most_frequent_categories_are_listed() {
        let texts: Vec<String> = (0..150).map(|i| format!("id{i:03}")).collect();
        let counts: Vec<usize> = (0..150).map(|i| if i < 5 { 10 } else { 1 }).collect();
        let listed = most_frequent(&texts, &counts);
        assert_eq!(listed.len(), MAX_LISTED_CATEGORIES + 1);
        assert_eq!(listed.last().unwrap(), &("(other)".to_string(), 50));
        assert!(listed.contains(&("id000".to_string(), 10)));
        assert_eq!(listed.iter().map(|(_, c)| c).sum::<usize>(), 195);
    }

    #[test]
    fn stats_read_back_from_json_even_when_empty() {
        let stats = vec![
            (
                "x".to_string(),
                ColumnStats::Numeric(numeric(&mut [3.0, 1.0, 2.0], 1)),
            ),
            (
                "empty".to_string(),
                ColumnStats::Numeric(numeric(&mut [], 4)),
            ),
            (
                "c".to_string(),
                ColumnStats::Category(CategoryStats {
                    count: 2,
                    nulls: 0,
                    frequencies: vec![("a".into(), 2)],
                }),
            ),
        ];
        let json = serde_json::to_value(&stats).unwrap();
        let back: Vec<(String, ColumnStats)> = serde_json::from_value(json).unwrap();
        assert_eq!(back[0], stats[0]);
        assert_eq!(back[2], stats[2]);
        let ColumnStats::Numeric(empty) = &back[1].1 else {
            panic!("{back:?}")
        };
        assert!(empty.min.is_nan() && empty.percentiles.is_empty() && empty.nulls == 4);
    }

    #[test]
    fn describe_covers_features_and_label() {
        let d = Dataset::new(
            vec!["x".into()],
            vec![1.0, 2.0, 3.0],
            RawLabels::Classes(LabelKind::Text, vec!["a".into(), "b".into(), "a".into()]),
        )
        .unwrap();
        let s = describe(&d, "y", 4, &Interrupts::none()).unwrap();
        assert_eq!(s.len(), 2);
        let ColumnStats::Category(c) = &s[1].1 else {
            panic!()
        };
        assert_eq!(c.frequencies, vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(c.nulls, 4);
    }
}
