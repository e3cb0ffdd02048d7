//! The train/test split. A row's side is a function of the seed, the values
//! of the key columns (by name) and its label's text alone, so a row keeps
//! its side when the table grows, when a class appears, and when a column is
//! added or the columns are reordered (the key is the project's input
//! contract, whatever else a model uses): a model trained yesterday and one
//! trained today are compared on rows neither trained on, as long as both
//! used the same seed and test size.

use super::dataset::{Dataset, Labels};
use super::{MlError, MlResult};

/// Fewest rows a side may have before metrics mean nothing.
pub const MIN_ROWS_PER_SIDE: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits `data`, hashing the columns named in `key` that the data has (in
/// name order), or every column if it has none of them.
pub fn holdout(data: &Dataset, test_size: f64, seed: u64, key: &[String]) -> MlResult<Split> {
    if !(test_size > 0.0 && test_size < 1.0) {
        return Err(MlError::invalid(format!(
            "test_size must be between 0 and 1 (exclusive), got {test_size}"
        )));
    }
    let mut named: Vec<(&String, usize)> = data
        .feature_names
        .iter()
        .enumerate()
        .filter(|(_, name)| key.contains(name))
        .map(|(j, name)| (name, j))
        .collect();
    if named.is_empty() {
        named = data
            .feature_names
            .iter()
            .enumerate()
            .map(|(j, n)| (n, j))
            .collect();
    }
    named.sort();
    let columns: Vec<usize> = named.into_iter().map(|(_, j)| j).collect();
    // A class hashes by its text, not its index, which shifts when a class
    // appears.
    let class_hashes: Vec<u64> = data
        .encoding()
        .map(|e| e.classes.iter().map(|c| text_hash(c)).collect())
        .unwrap_or_default();
    // Compare against a threshold on the top 53 bits, which f64 holds exactly.
    let threshold = (test_size * (1u64 << 53) as f64) as u64;
    let mut split = Split {
        train: Vec::new(),
        test: Vec::new(),
    };
    for i in 0..data.n_rows() {
        let row = data.row(i);
        let mut h = mix(seed ^ 0x5851_f42d_4c95_7f2d);
        for &j in &columns {
            // A category hashes by its text, not its dictionary index,
            // which shifts when a category appears.
            h = mix(h ^ data.text(j, row[j]).map_or(row[j].to_bits(), text_hash));
        }
        h = mix(h ^ match &data.labels {
            Labels::Classes { index, .. } => class_hashes[index[i]],
            Labels::Values(values) => values[i].to_bits(),
        });
        if (h >> 11) < threshold {
            split.test.push(i);
        } else {
            split.train.push(i);
        }
    }
    if split.test.len() < MIN_ROWS_PER_SIDE || split.train.len() < MIN_ROWS_PER_SIDE {
        return Err(MlError::insufficient(format!(
            "the split left {} training and {} test rows; each side needs at least {MIN_ROWS_PER_SIDE}",
            split.train.len(),
            split.test.len()
        ))
        .with_hint("add rows or change test_size"));
    }
    Ok(split)
}

/// FNV-1a over the text's bytes, then mixed: fixed forever, like `mix`.
fn text_hash(text: &str) -> u64 {
    let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    mix(fnv)
}

/// splitmix64's finaliser: a fixed, well-mixed 64-bit hash step. Written out
/// here because std's hashers may change between Rust releases, and the split
/// must not.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{LabelKind, RawLabels};

    fn dataset(n: usize) -> Dataset {
        let records = (0..n).map(|i| i as f64).collect();
        let labels = (0..n).map(|i| (i % 7) as f64).collect();
        Dataset::new(vec!["x".into()], records, RawLabels::Values(labels)).unwrap()
    }

    fn all(d: &Dataset) -> Vec<String> {
        d.feature_names.clone()
    }

    #[test]
    fn split_fraction_is_close_to_test_size() {
        let d = dataset(10_000);
        let s = holdout(&d, 0.25, 42, &all(&d)).unwrap();
        let frac = s.test.len() as f64 / 10_000.0;
        assert!((frac - 0.25).abs() < 0.02, "{frac}");
        assert_eq!(s.train.len() + s.test.len(), 10_000);
    }

    #[test]
    fn rows_keep_their_side_when_data_grows() {
        let small = dataset(1_000);
        let big = dataset(2_000);
        let s_small = holdout(&small, 0.3, 7, &all(&small)).unwrap();
        let s_big = holdout(&big, 0.3, 7, &all(&big)).unwrap();
        let test_small: Vec<Vec<f64>> = s_small
            .test
            .iter()
            .map(|&i| small.row(i).to_vec())
            .collect();
        let test_big: Vec<Vec<f64>> = s_big.test.iter().map(|&i| big.row(i).to_vec()).collect();
        assert!(test_small.iter().all(|r| test_big.contains(r)));
    }

    #[test]
    fn seed_changes_the_split() {
        let d = dataset(500);
        assert_ne!(
            holdout(&d, 0.25, 1, &all(&d)).unwrap(),
            holdout(&d, 0.25, 2, &all(&d)).unwrap()
        );
    }

    #[test]
    fn tiny_data_and_bad_sizes_are_errors() {
        let key = ["x".to_string()];
        assert!(holdout(&dataset(3), 0.25, 42, &key).is_err());
        assert!(holdout(&dataset(100), 0.0, 42, &key).is_err());
        assert!(holdout(&dataset(100), 1.0, 42, &key).is_err());
        assert!(holdout(&dataset(100), f64::NAN, 42, &key).is_err());
    }

    /// Rows as (x, label text), the label of class k being `names[k]`.
    fn classified(rows: &[(f64, f64, &str)], names: &[&str]) -> Dataset {
        Dataset::new(
            names.iter().map(|n| n.to_string()).collect(),
            rows.iter()
                .flat_map(|&(a, b, _)| if names[0] == "a" { [a, b] } else { [b, a] })
                .collect(),
            RawLabels::Classes(
                LabelKind::Text,
                rows.iter().map(|&(_, _, l)| l.to_string()).collect(),
            ),
        )
        .unwrap()
    }

    fn test_rows(d: &Dataset, key: &[String]) -> Vec<(u64, u64, String)> {
        let Labels::Classes { encoding, index } = &d.labels else {
            unreachable!()
        };
        let a = d.feature_names.iter().position(|n| n == "a").unwrap();
        let b = d.feature_names.iter().position(|n| n == "b").unwrap();
        let mut rows: Vec<_> = holdout(d, 0.3, 9, key)
            .unwrap()
            .test
            .iter()
            .map(|&i| {
                let r = d.row(i);
                (
                    r[a].to_bits(),
                    r[b].to_bits(),
                    encoding.classes[index[i]].clone(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn rows_keep_their_side_when_a_class_appears_or_columns_change() {
        let base: Vec<(f64, f64, &str)> = (0..600)
            .map(|i| (i as f64, (i % 13) as f64, ["m", "p"][i % 2]))
            .collect();
        let key = vec!["a".to_string(), "b".to_string()];
        let before = test_rows(&classified(&base, &["a", "b"]), &key);
        // A new class "c" sorts between the old ones and shifts their indices.
        let mut more = base.clone();
        more.extend((0..100).map(|i| (1000.0 + i as f64, 1.0, "n")));
        let after = test_rows(&classified(&more, &["a", "b"]), &key);
        assert!(before.iter().all(|r| after.contains(r)));
        // The columns in another order.
        assert_eq!(test_rows(&classified(&base, &["b", "a"]), &key), before);
        // A column added beside the key is not hashed.
        let wider = Dataset::new(
            vec!["a".into(), "b".into(), "new".into()],
            base.iter().flat_map(|&(a, b, _)| [a, b, a * 3.0]).collect(),
            RawLabels::Classes(
                LabelKind::Text,
                base.iter().map(|&(_, _, l)| l.to_string()).collect(),
            ),
        )
        .unwrap();
        assert_eq!(test_rows(&wider, &key), before);
    }
}
