//! Training data in canonical form: rows sorted by value, so the same data
//! gives the same model and the same hash whatever order the scan returned.
//!
//! A raw dataset (as read from SQL) holds every input column as numbers: a
//! NaN is a missing value (SQL NULL), a categorical column holds the index
//! of its text in the column's dictionary (sorted, so the index does not
//! depend on row order), a timestamp its epoch seconds. Preprocessing turns
//! it into an encoded dataset, every value finite, for the estimators.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Interrupts, MlError, MlResult, Task};

/// How a classification label was typed in SQL; it decides class order and
/// what `predict()` returns as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    Numeric,
    Boolean,
    Text,
}

/// The classes of a classifier, in the order `predict_proba` reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelEncoding {
    pub kind: LabelKind,
    pub classes: Vec<String>,
}

impl LabelEncoding {
    /// Sorted distinct classes: numerically for numeric labels, false before
    /// true for booleans, by bytes for text.
    fn from_labels(kind: LabelKind, labels: &[String]) -> MlResult<Self> {
        // Only the distinct labels are copied.
        let distinct: std::collections::BTreeSet<&str> =
            labels.iter().map(String::as_str).collect();
        let mut classes: Vec<String> = distinct.into_iter().map(str::to_string).collect();
        if kind == LabelKind::Numeric {
            let mut keyed = classes
                .into_iter()
                .map(|c| {
                    c.parse::<f64>()
                        .map(|v| (v, c.clone()))
                        .map_err(|_| MlError::wrong_type(format!("label \"{c}\" is not numeric")))
                })
                .collect::<MlResult<Vec<_>>>()?;
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            classes = keyed.into_iter().map(|(_, c)| c).collect();
        }
        Ok(LabelEncoding { kind, classes })
    }

    pub fn index_of(&self, class: &str) -> Option<usize> {
        match self.kind {
            LabelKind::Numeric => {
                let wanted = class.parse::<f64>().ok()?;
                self.classes
                    .iter()
                    .position(|c| c.parse::<f64>().ok() == Some(wanted))
            }
            _ => self.classes.iter().position(|c| c == class),
        }
    }

    /// The number `predict()` returns for a class: the label itself when it
    /// is numeric, 0/1 for booleans, the class index for text labels.
    pub fn numeric_value(&self, index: usize) -> f64 {
        let class = &self.classes[index];
        match self.kind {
            LabelKind::Numeric => class.parse::<f64>().unwrap_or(f64::NAN),
            LabelKind::Boolean => {
                if class == "true" {
                    1.0
                } else {
                    0.0
                }
            }
            LabelKind::Text => index as f64,
        }
    }
}

/// What an input column holds, which decides how it is preprocessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric,
    /// 0 or 1.
    Boolean,
    /// Text, varchar or an enum: an index into the column's dictionary.
    Categorical,
    /// A date or timestamp, as seconds since 1970-01-01 00:00 UTC.
    Timestamp,
}

impl ColumnKind {
    /// What a column of this kind is, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Categorical => "text or enum",
            ColumnKind::Timestamp => "date or timestamp",
        }
    }
}

/// Labels as read from SQL, before encoding.
pub enum RawLabels {
    /// Classification labels in their text form, with the SQL kind.
    Classes(LabelKind, Vec<String>),
    /// Regression targets.
    Values(Vec<f64>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    Classes {
        encoding: LabelEncoding,
        index: Vec<usize>,
    },
    Values(Vec<f64>),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Classes { index, .. } => index.len(),
            Labels::Values(values) => values.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    pub kinds: Vec<ColumnKind>,
    /// Per column: the texts a categorical column's indices name, sorted;
    /// empty for other kinds.
    pub dictionaries: Vec<Vec<String>>,
    /// Row-major, `n_rows * feature_names.len()` values; NaN is missing.
    pub records: Vec<f64>,
    pub labels: Labels,
}

/// One input column as read, before the dataset is put in canonical order.
pub struct RawColumn {
    pub name: String,
    pub kind: ColumnKind,
    /// A categorical column's texts, in any order; its values index them.
    pub dictionary: Vec<String>,
}

impl Dataset {
    /// Builds the canonical dataset of numeric columns. `records` is
    /// row-major.
    pub fn new(feature_names: Vec<String>, records: Vec<f64>, labels: RawLabels) -> MlResult<Self> {
        let columns = feature_names
            .into_iter()
            .map(|name| RawColumn {
                name,
                kind: ColumnKind::Numeric,
                dictionary: Vec::new(),
            })
            .collect();
        Self::new_interruptible(columns, records, labels, &Interrupts::none())
    }

    /// Builds the canonical dataset: dictionaries sorted (and indices
    /// renumbered), then rows sorted, asking `interrupts` while it sorts:
    /// putting millions of rows in canonical order takes seconds.
    pub fn new_interruptible(
        columns: Vec<RawColumn>,
        mut records: Vec<f64>,
        labels: RawLabels,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Self> {
        let width = columns.len();
        let mut feature_names = Vec::with_capacity(width);
        let mut kinds = Vec::with_capacity(width);
        let mut dictionaries = Vec::with_capacity(width);
        for (j, column) in columns.into_iter().enumerate() {
            let dictionary = if column.kind == ColumnKind::Categorical {
                let mut order: Vec<usize> = (0..column.dictionary.len()).collect();
                order.sort_by(|&a, &b| column.dictionary[a].cmp(&column.dictionary[b]));
                let mut renumber = vec![0.0; order.len()];
                for (new, &old) in order.iter().enumerate() {
                    renumber[old] = new as f64;
                }
                if width > 0 {
                    for v in records.iter_mut().skip(j).step_by(width) {
                        if !v.is_nan() {
                            *v = *renumber.get(*v as usize).ok_or_else(|| {
                                MlError::invalid(format!(
                                    "column \"{}\" has a category index outside its dictionary",
                                    column.name
                                ))
                            })?;
                        }
                    }
                }
                let mut texts = column.dictionary;
                texts.sort();
                texts
            } else {
                Vec::new()
            };
            feature_names.push(column.name);
            kinds.push(column.kind);
            dictionaries.push(dictionary);
        }
        if width == 0 {
            return Err(MlError::invalid("no feature columns to train on")
                .with_hint("name the feature columns in features => ARRAY[...]"));
        }
        let n_rows = records.len() / width;
        if records.len() != n_rows * width {
            return Err(MlError::invalid("records do not fill whole rows"));
        }
        if let Some(pos) = records.iter().position(|v| v.is_infinite()) {
            return Err(MlError::invalid(format!(
                "feature \"{}\" has an infinite value",
                feature_names[pos % width]
            )));
        }
        let labels = match labels {
            RawLabels::Classes(kind, names) => {
                check_len(names.len(), n_rows)?;
                let encoding = LabelEncoding::from_labels(kind, &names)?;
                // The classes are these very strings, deduplicated, so an
                // exact-text map finds each row's class in one lookup.
                let position: HashMap<&str, usize> = encoding
                    .classes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i))
                    .collect();
                let index = names.iter().map(|n| position[n.as_str()]).collect();
                Labels::Classes { encoding, index }
            }
            RawLabels::Values(values) => {
                check_len(values.len(), n_rows)?;
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(MlError::invalid(
                        "the target has a non-finite value (NaN or infinity)",
                    ));
                }
                Labels::Values(values)
            }
        };
        let mut dataset = Dataset {
            feature_names,
            kinds,
            dictionaries,
            records,
            labels,
        };
        dataset.sort_rows(interrupts)?;
        Ok(dataset)
    }

    /// A dataset of encoded features for the rows of `self`, in the same
    /// order (so a split of `self` splits it too). Each feature is a number
    /// or a category's index (`kinds`); NaN is a missing value kept for an
    /// algorithm that takes it (impute "none").
    pub fn encoded(
        &self,
        feature_names: Vec<String>,
        kinds: Vec<ColumnKind>,
        records: Vec<f64>,
    ) -> MlResult<Self> {
        Self::of_encoded(feature_names, kinds, records, self.labels.clone())
    }

    /// `encoded`, keeping the labels of `self` rather than copying them.
    pub fn into_encoded(
        self,
        feature_names: Vec<String>,
        kinds: Vec<ColumnKind>,
        records: Vec<f64>,
    ) -> MlResult<Self> {
        Self::of_encoded(feature_names, kinds, records, self.labels)
    }

    fn of_encoded(
        feature_names: Vec<String>,
        kinds: Vec<ColumnKind>,
        records: Vec<f64>,
        labels: Labels,
    ) -> MlResult<Self> {
        let width = feature_names.len();
        if width == 0 || kinds.len() != width || records.len() != labels.len() * width {
            return Err(MlError::invalid("the encoded rows do not match the data"));
        }
        if let Some(pos) = records.iter().position(|v| v.is_infinite()) {
            return Err(MlError::invalid(format!(
                "preprocessing gave an infinite value for \"{}\"",
                feature_names[pos % width]
            )));
        }
        Ok(Dataset {
            kinds,
            dictionaries: vec![Vec::new(); width],
            feature_names,
            records,
            labels,
        })
    }

    /// The text a categorical value names, if it is one.
    pub fn text(&self, column: usize, value: f64) -> Option<&str> {
        if value.is_nan() {
            return None;
        }
        self.dictionaries[column]
            .get(value as usize)
            .map(String::as_str)
    }

    pub fn n_rows(&self) -> usize {
        self.records.len() / self.width()
    }

    pub fn width(&self) -> usize {
        self.feature_names.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let w = self.width();
        &self.records[i * w..(i + 1) * w]
    }

    /// A dataset of `rows` only, in that order (a search's subsample).
    pub fn subset(&self, rows: &[usize]) -> Dataset {
        let mut records = Vec::with_capacity(rows.len() * self.width());
        for &i in rows {
            records.extend_from_slice(self.row(i));
        }
        Dataset {
            feature_names: self.feature_names.clone(),
            kinds: self.kinds.clone(),
            dictionaries: self.dictionaries.clone(),
            records,
            labels: match &self.labels {
                Labels::Classes { encoding, index } => Labels::Classes {
                    encoding: encoding.clone(),
                    index: rows.iter().map(|&i| index[i]).collect(),
                },
                Labels::Values(values) => Labels::Values(rows.iter().map(|&i| values[i]).collect()),
            },
        }
    }

    pub fn task(&self) -> Task {
        match self.labels {
            Labels::Classes { .. } => Task::Classification,
            Labels::Values(_) => Task::Regression,
        }
    }

    pub fn encoding(&self) -> Option<&LabelEncoding> {
        match &self.labels {
            Labels::Classes { encoding, .. } => Some(encoding),
            Labels::Values(_) => None,
        }
    }

    /// The label of row `i` as a number: class index or target value.
    pub fn label_value(&self, i: usize) -> f64 {
        match &self.labels {
            Labels::Classes { index, .. } => index[i] as f64,
            Labels::Values(values) => values[i],
        }
    }

    /// A hash of the canonical data: names, then features, then labels.
    pub fn sha256_hex(&self, interrupts: &Interrupts<'_>) -> MlResult<String> {
        let mut hasher = Sha256::new();
        for ((name, kind), dictionary) in self
            .feature_names
            .iter()
            .zip(&self.kinds)
            .zip(&self.dictionaries)
        {
            hasher.update(name.as_bytes());
            hasher.update([0, *kind as u8]);
            for text in dictionary {
                hasher.update(text.as_bytes());
                hasher.update([0]);
            }
        }
        for chunk in self.records.chunks(1 << 20) {
            interrupts.check()?;
            for v in chunk {
                hasher.update(v.to_le_bytes());
            }
        }
        match &self.labels {
            Labels::Classes { encoding, index } => {
                for &i in index {
                    hasher.update(encoding.classes[i].as_bytes());
                    hasher.update([0]);
                }
            }
            Labels::Values(values) => {
                for v in values {
                    hasher.update(v.to_le_bytes());
                }
            }
        }
        Ok(hex(&hasher.finalize()))
    }

    fn sort_rows(&mut self, interrupts: &Interrupts<'_>) -> MlResult<()> {
        let n = self.n_rows();
        let mut order: Vec<usize> = (0..n).collect();
        // A sort cannot be left midway, so once the hook says stop, every
        // comparison left is answered at once and the error returned after.
        let compared = std::cell::Cell::new(0u32);
        let stopped = std::cell::RefCell::new(None);
        // Unstable, so no scratch copy of the order: rows that compare
        // equal are equal to the bit, labels included.
        order.sort_unstable_by(|&a, &b| {
            if stopped.borrow().is_some() {
                return Ordering::Equal;
            }
            compared.set(compared.get().wrapping_add(1));
            if compared.get().is_multiple_of(1 << 16) {
                if let Err(e) = interrupts.check() {
                    *stopped.borrow_mut() = Some(e);
                    return Ordering::Equal;
                }
            }
            self.compare_rows(a, b)
        });
        if let Some(e) = stopped.into_inner() {
            return Err(e);
        }
        let width = self.width();
        permute_rows(&mut self.records, width, &order);
        self.labels = match &self.labels {
            Labels::Classes { encoding, index } => Labels::Classes {
                encoding: encoding.clone(),
                index: order.iter().map(|&i| index[i]).collect(),
            },
            Labels::Values(values) => Labels::Values(order.iter().map(|&i| values[i]).collect()),
        };
        Ok(())
    }

    fn compare_rows(&self, a: usize, b: usize) -> Ordering {
        self.row(a)
            .iter()
            .zip(self.row(b))
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.label_value(a).total_cmp(&self.label_value(b)))
    }
}

/// Puts row `order[k]` of the row-major `records` at row `k`, in place:
/// the rows are the largest thing training holds, and a sorted copy would
/// double them. Each cycle of the permutation is followed once, with one
/// row set aside.
fn permute_rows(records: &mut [f64], width: usize, order: &[usize]) {
    let mut placed = vec![false; order.len()];
    let mut set_aside = vec![0.0; width];
    for start in 0..order.len() {
        if placed[start] {
            continue;
        }
        set_aside.copy_from_slice(&records[start * width..(start + 1) * width]);
        let mut at = start;
        loop {
            placed[at] = true;
            let from = order[at];
            if from == start {
                records[at * width..(at + 1) * width].copy_from_slice(&set_aside);
                break;
            }
            records.copy_within(from * width..(from + 1) * width, at * width);
            at = from;
        }
    }
}

fn check_len(labels: usize, rows: usize) -> MlResult<()> {
    if labels == rows {
        Ok(())
    } else {
        Err(MlError::invalid(format!(
            "{labels} labels for {rows} rows of features"
        )))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rows_are_permuted_in_place_as_a_copy_would_gather_them() {
        let width = 3;
        // Cycles of several lengths, fixed points among them.
        let order = [4, 0, 2, 6, 1, 7, 3, 5, 8];
        let records: Vec<f64> = (0..order.len() * width).map(|v| v as f64).collect();
        let gathered: Vec<f64> = order
            .iter()
            .flat_map(|&i| records[i * width..(i + 1) * width].to_vec())
            .collect();
        let mut permuted = records.clone();
        permute_rows(&mut permuted, width, &order);
        assert_eq!(permuted, gathered);
    }

    #[test]
    fn row_order_does_not_change_the_dataset() {
        let a = Dataset::new(
            names(&["x", "y"]),
            vec![1.0, 2.0, 0.5, 9.0, 3.0, 1.0],
            RawLabels::Classes(LabelKind::Text, names(&["b", "a", "b"])),
        )
        .unwrap();
        let b = Dataset::new(
            names(&["x", "y"]),
            vec![3.0, 1.0, 1.0, 2.0, 0.5, 9.0],
            RawLabels::Classes(LabelKind::Text, names(&["b", "b", "a"])),
        )
        .unwrap();
        assert_eq!(a.records, b.records);
        assert_eq!(a.labels, b.labels);
        assert_eq!(
            a.sha256_hex(&Interrupts::none()).unwrap(),
            b.sha256_hex(&Interrupts::none()).unwrap()
        );
        assert_eq!(a.row(0), &[0.5, 9.0]);
    }

    #[test]
    fn an_interrupt_stops_the_canonical_sort() {
        let n = 200_000;
        let records: Vec<f64> = (0..n).map(|i| ((i * 7919) % n) as f64).collect();
        let labels = RawLabels::Values((0..n).map(|i| i as f64).collect());
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            Err(MlError::invalid("canceled"))
        };
        let column = RawColumn {
            name: "x".into(),
            kind: ColumnKind::Numeric,
            dictionary: Vec::new(),
        };
        let err =
            Dataset::new_interruptible(vec![column], records, labels, &Interrupts::new(&stop))
                .unwrap_err();
        assert_eq!(err.message, "canceled");
        assert_eq!(asked.get(), 1, "asked once, then the sort ran out");
    }

    #[test]
    fn numeric_classes_sort_by_value_not_text() {
        let d = Dataset::new(
            names(&["x"]),
            vec![1.0, 2.0, 3.0],
            RawLabels::Classes(LabelKind::Numeric, names(&["10", "2", "-1"])),
        )
        .unwrap();
        let enc = d.encoding().unwrap();
        assert_eq!(enc.classes, names(&["-1", "2", "10"]));
        assert_eq!(enc.numeric_value(2), 10.0);
        assert_eq!(enc.index_of("2.0"), Some(1));
    }

    #[test]
    fn infinite_features_are_rejected_and_nan_is_missing() {
        let err = Dataset::new(
            names(&["x", "y"]),
            vec![1.0, f64::INFINITY],
            RawLabels::Values(vec![1.0]),
        )
        .unwrap_err();
        assert!(err.message.contains("\"y\""), "{}", err.message);
        assert!(Dataset::new(names(&["x"]), vec![f64::NAN], RawLabels::Values(vec![1.0])).is_ok());
    }

    #[test]
    fn dictionaries_are_sorted_whatever_the_order_read() {
        let column = |dictionary: &[&str]| RawColumn {
            name: "colour".into(),
            kind: ColumnKind::Categorical,
            dictionary: names(dictionary),
        };
        let labels = || RawLabels::Values(vec![1.0, 2.0, 3.0]);
        let a = Dataset::new_interruptible(
            vec![column(&["red", "blue"])],
            vec![0.0, 1.0, f64::NAN],
            labels(),
            &Interrupts::none(),
        )
        .unwrap();
        let b = Dataset::new_interruptible(
            vec![column(&["blue", "red"])],
            vec![1.0, 0.0, f64::NAN],
            labels(),
            &Interrupts::none(),
        )
        .unwrap();
        assert_eq!(a.dictionaries[0], names(&["blue", "red"]));
        assert_eq!(a.records[..2], b.records[..2]);
        assert!(a.records[2].is_nan());
        assert_eq!(a.text(0, a.records[0]), Some("blue"));
        assert_eq!(
            a.sha256_hex(&Interrupts::none()).unwrap(),
            b.sha256_hex(&Interrupts::none()).unwrap()
        );
    }

    #[test]
    fn text_labels_predict_their_index() {
        let d = Dataset::new(
            names(&["x"]),
            vec![1.0, 2.0],
            RawLabels::Classes(LabelKind::Text, names(&["setosa", "iris"])),
        )
        .unwrap();
        let enc = d.encoding().unwrap();
        assert_eq!(enc.numeric_value(1), 1.0);
        assert_eq!(enc.classes[1], "setosa");
    }
}
