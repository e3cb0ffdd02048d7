//! The train/test split. A row's side is a function of its values and the
//! seed alone, so a row keeps its side when the table grows: a model trained
//! yesterday and one trained today are compared on rows neither trained on,
//! as long as both used the same seed and test size.

use super::dataset::Dataset;
use super::{MlError, MlResult};

/// Fewest rows a side may have before metrics mean nothing.
pub const MIN_ROWS_PER_SIDE: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

pub fn holdout(data: &Dataset, test_size: f64, seed: u64) -> MlResult<Split> {
    if !(test_size > 0.0 && test_size < 1.0) {
        return Err(MlError::invalid(format!(
            "test_size must be between 0 and 1 (exclusive), got {test_size}"
        )));
    }
    // Compare against a threshold on the top 53 bits, which f64 holds exactly.
    let threshold = (test_size * (1u64 << 53) as f64) as u64;
    let mut split = Split {
        train: Vec::new(),
        test: Vec::new(),
    };
    for i in 0..data.n_rows() {
        let mut h = mix(seed ^ 0x5851_f42d_4c95_7f2d);
        for v in data.row(i) {
            h = mix(h ^ v.to_bits());
        }
        h = mix(h ^ data.label_value(i).to_bits());
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
    use crate::ml::dataset::RawLabels;

    fn dataset(n: usize) -> Dataset {
        let records = (0..n).map(|i| i as f64).collect();
        let labels = (0..n).map(|i| (i % 7) as f64).collect();
        Dataset::new(vec!["x".into()], records, RawLabels::Values(labels)).unwrap()
    }

    #[test]
    fn split_fraction_is_close_to_test_size() {
        let s = holdout(&dataset(10_000), 0.25, 42).unwrap();
        let frac = s.test.len() as f64 / 10_000.0;
        assert!((frac - 0.25).abs() < 0.02, "{frac}");
        assert_eq!(s.train.len() + s.test.len(), 10_000);
    }

    #[test]
    fn rows_keep_their_side_when_data_grows() {
        let small = dataset(1_000);
        let big = dataset(2_000);
        let s_small = holdout(&small, 0.3, 7).unwrap();
        let s_big = holdout(&big, 0.3, 7).unwrap();
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
        assert_ne!(holdout(&d, 0.25, 1).unwrap(), holdout(&d, 0.25, 2).unwrap());
    }

    #[test]
    fn tiny_data_and_bad_sizes_are_errors() {
        assert!(holdout(&dataset(3), 0.25, 42).is_err());
        assert!(holdout(&dataset(100), 0.0, 42).is_err());
        assert!(holdout(&dataset(100), 1.0, 42).is_err());
        assert!(holdout(&dataset(100), f64::NAN, 42).is_err());
    }
}
