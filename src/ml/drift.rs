//! Drift of recent values against a training snapshot's statistics:
//! the population stability index over the training deciles and the
//! Kolmogorov-Smirnov statistic for numbers, the Jensen-Shannon distance
//! for categories.

use serde::{Deserialize, Serialize};

use super::stats::{bin_of, CategoryStats, ColumnStats, NumericStats};

/// When a feature, and the whole dataset, counts as drifted. Evidently's
/// and the usual PSI rules of thumb are the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// PSI at which a numeric feature warns.
    pub psi_warn: f64,
    /// PSI at which it drifts.
    pub psi_alert: f64,
    /// Kolmogorov-Smirnov p-value below which it drifts.
    pub ks_p_value: f64,
    /// Jensen-Shannon distance at which a categorical feature drifts.
    pub js: f64,
    /// Share of drifted features at which the dataset drifts.
    pub share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            psi_warn: 0.1,
            psi_alert: 0.25,
            ks_p_value: 0.05,
            js: 0.1,
            share: 0.5,
        }
    }
}

impl Thresholds {
    /// A stored policy's thresholds (`drift`, and `max_drift` as the
    /// dataset's share), the defaults for what it leaves out.
    pub fn of_policy(policy: &serde_json::Value) -> Result<Thresholds, String> {
        let mut limits = match policy.get("drift") {
            Some(drift) => serde_json::from_value(drift.clone()).map_err(|e| e.to_string())?,
            None => Thresholds::default(),
        };
        if let Some(share) = policy.get("max_drift").and_then(serde_json::Value::as_f64) {
            limits.share = share;
        }
        Ok(limits)
    }
}

/// How far the snapshot's distribution function (from 101 percentiles) may
/// be off.
const REFERENCE_RESOLUTION: f64 = 0.01;

/// Empty bins are floored at this share, so PSI stays finite.
const PSI_FLOOR: f64 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Stable,
    Warn,
    Drift,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stable => "stable",
            Status::Warn => "warn",
            Status::Drift => "drift",
        }
    }
}

/// One column's comparison. Measures that do not apply are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDrift {
    pub rows: usize,
    pub psi: Option<f64>,
    pub ks: Option<f64>,
    pub ks_p_value: Option<f64>,
    pub js: Option<f64>,
    pub status: Status,
    /// The bins (deciles for numbers, categories) with the training share
    /// and the recent share in each, for a picture of what moved.
    pub distribution: Vec<BinShare>,
}

/// One bin of a column's distribution: its label, the share of training
/// values and of recent values in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinShare {
    pub bin: String,
    pub training: f64,
    pub recent: f64,
}

impl ColumnDrift {
    fn unmeasured() -> Self {
        ColumnDrift {
            rows: 0,
            psi: None,
            ks: None,
            ks_p_value: None,
            js: None,
            status: Status::Stable,
            distribution: Vec::new(),
        }
    }
}

/// Bin `k`'s label for inner `edges` (a value equal to an edge falls in
/// the bin below it).
fn bin_label(edges: &[f64], k: usize) -> String {
    let short = |v: f64| format!("{}", (v * 1e4).round() / 1e4);
    match (k.checked_sub(1).and_then(|i| edges.get(i)), edges.get(k)) {
        (None, Some(&hi)) => format!("≤ {}", short(hi)),
        (Some(&lo), Some(&hi)) => format!("{} – {}", short(lo), short(hi)),
        (Some(&lo), None) => format!("> {}", short(lo)),
        (None, None) => "all".to_string(),
    }
}

/// Recent numbers (NULLs left out) against a numeric column's snapshot.
/// `None` when the snapshot holds no distribution (made before 0.2.0).
pub fn numeric(
    reference: &NumericStats,
    recent: &mut [f64],
    limits: &Thresholds,
) -> Option<ColumnDrift> {
    if reference.percentiles.len() != 101
        || reference.bin_shares.len() != reference.bin_edges.len() + 1
    {
        return None;
    }
    if recent.is_empty() {
        return Some(ColumnDrift::unmeasured());
    }
    recent.sort_by(f64::total_cmp);
    let m = recent.len();
    let mut counts = vec![0usize; reference.bin_shares.len()];
    for &v in recent.iter() {
        counts[bin_of(&reference.bin_edges, v)] += 1;
    }
    let distribution = reference
        .bin_shares
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(k, (&training, &c))| BinShare {
            bin: bin_label(&reference.bin_edges, k),
            training,
            recent: c as f64 / m as f64,
        })
        .collect();
    let psi = reference
        .bin_shares
        .iter()
        .zip(&counts)
        .map(|(&expected, &c)| {
            let (e, a) = (
                expected.max(PSI_FLOOR),
                (c as f64 / m as f64).max(PSI_FLOOR),
            );
            (a - e) * (a / e).ln()
        })
        .sum::<f64>();
    // Shares computed two ways differ in the last bits; such a PSI is 0.
    let psi = if psi.abs() < 1e-12 { 0.0 } else { psi };
    let ks = ks_statistic(&reference.percentiles, recent);
    // The snapshot's distribution is exact to about a hundredth (101
    // percentiles); a gap within that is no evidence, however many rows, so
    // the p-value is taken for the gap beyond it.
    let p = ks_p_value((ks - REFERENCE_RESOLUTION).max(0.0), reference.count, m);
    let status = if psi >= limits.psi_alert || p < limits.ks_p_value {
        Status::Drift
    } else if psi >= limits.psi_warn {
        Status::Warn
    } else {
        Status::Stable
    };
    Some(ColumnDrift {
        rows: m,
        psi: Some(psi),
        ks: Some(ks),
        ks_p_value: Some(p),
        js: None,
        status,
        distribution,
    })
}

/// The training distribution function at `x` (`left`: just below `x`),
/// from its percentiles, linear between them; tied percentiles make a
/// step, as a column of repeated values has.
fn reference_cdf(percentiles: &[f64], x: f64, left: bool) -> f64 {
    let j = if left {
        percentiles.partition_point(|&p| p < x)
    } else {
        percentiles.partition_point(|&p| p <= x)
    };
    if j == 0 {
        return 0.0;
    }
    if j == percentiles.len() {
        return 1.0;
    }
    let (lo, hi) = (percentiles[j - 1], percentiles[j]);
    ((j - 1) as f64 + (x - lo) / (hi - lo)) / 100.0
}

/// The largest gap between the training distribution (from its
/// percentiles) and the recent values' (sorted). Between two points where
/// either has a step or a bend the gap is monotone, so it is checked at
/// each such point, on both sides.
fn ks_statistic(percentiles: &[f64], sorted: &[f64]) -> f64 {
    let m = sorted.len() as f64;
    let gap = |x: f64| {
        let below = sorted.partition_point(|&v| v < x) as f64 / m;
        let at_or_below = sorted.partition_point(|&v| v <= x) as f64 / m;
        (reference_cdf(percentiles, x, true) - below)
            .abs()
            .max((reference_cdf(percentiles, x, false) - at_or_below).abs())
    };
    sorted
        .iter()
        .chain(percentiles)
        .fold(0.0, |d: f64, &x| d.max(gap(x)))
}

/// The asymptotic two-sample Kolmogorov-Smirnov p-value (Stephens'
/// correction, as in Numerical Recipes' `probks`).
pub fn ks_p_value(d: f64, n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let effective = (n as f64 * m as f64 / (n + m) as f64).sqrt();
    let lambda = (effective + 0.12 + 0.11 / effective) * d;
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    let mut previous_term: f64 = 0.0;
    for k in 1..=100 {
        let term = sign * 2.0 * (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        sum += term;
        if term.abs() <= 1e-3 * previous_term.abs() || term.abs() <= 1e-8 * sum.abs() {
            return sum.clamp(0.0, 1.0);
        }
        sign = -sign;
        previous_term = term;
    }
    1.0
}

/// Recent categories (NULLs left out) against a categorical column's
/// snapshot; categories the snapshot does not list count as its
/// "(other)".
pub fn categorical<'a>(
    reference: &CategoryStats,
    recent: impl Iterator<Item = &'a str>,
    limits: &Thresholds,
) -> ColumnDrift {
    const OTHER: &str = "(other)";
    let mut names: Vec<&str> = reference
        .frequencies
        .iter()
        .map(|(c, _)| c.as_str())
        .collect();
    if !names.contains(&OTHER) {
        names.push(OTHER);
    }
    let mut expected = vec![0.0; names.len()];
    for (c, n) in &reference.frequencies {
        if let Some(k) = names.iter().position(|x| x == c) {
            expected[k] += *n as f64;
        }
    }
    let other = names.iter().position(|x| *x == OTHER).unwrap_or(0);
    let mut actual = vec![0.0; names.len()];
    let mut rows = 0;
    for value in recent {
        rows += 1;
        let k = names.iter().position(|x| *x == value).unwrap_or(other);
        actual[k] += 1.0;
    }
    if rows == 0 {
        return ColumnDrift::unmeasured();
    }
    let js = js_distance(&expected, &actual);
    let total = expected.iter().sum::<f64>().max(1.0);
    let distribution = names
        .iter()
        .zip(expected.iter().zip(&actual))
        .map(|(name, (&e, &a))| BinShare {
            bin: name.to_string(),
            training: e / total,
            recent: a / rows as f64,
        })
        .collect();
    ColumnDrift {
        rows,
        psi: None,
        ks: None,
        ks_p_value: None,
        js: Some(js),
        status: if js >= limits.js {
            Status::Drift
        } else {
            Status::Stable
        },
        distribution,
    }
}

/// The Jensen-Shannon distance (base 2, so between 0 and 1) between two
/// distributions given as counts.
fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if sp <= 0.0 || sq <= 0.0 {
        return 0.0;
    }
    let mut divergence = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        if a > 0.0 {
            divergence += 0.5 * a * (a / m).log2();
        }
        if b > 0.0 {
            divergence += 0.5 * b * (b / m).log2();
        }
    }
    divergence.max(0.0).sqrt()
}

/// How far a column moved between two training snapshots (`ambient.diff`):
/// the PSI over `reference`'s decile bins for numbers, with `other`'s share
/// in each bin read off its 101 percentiles; the Jensen-Shannon distance
/// for categories. `None` when the kinds differ or a snapshot keeps no
/// distribution (one made before 0.2.0).
pub fn between_snapshots(
    reference: &ColumnStats,
    other: &ColumnStats,
) -> Option<(&'static str, f64)> {
    match (reference, other) {
        (ColumnStats::Numeric(a), ColumnStats::Numeric(b)) => {
            if a.bin_shares.len() != a.bin_edges.len() + 1 || b.percentiles.len() != 101 {
                return None;
            }
            let below = |edge: f64| share_at_most(&b.percentiles, edge);
            let mut previous = 0.0;
            let mut psi = 0.0;
            for (k, &expected) in a.bin_shares.iter().enumerate() {
                let upto = a.bin_edges.get(k).map_or(1.0, |&e| below(e));
                let actual = (upto - previous).max(PSI_FLOOR);
                previous = upto;
                let expected = expected.max(PSI_FLOOR);
                psi += (actual - expected) * (actual / expected).ln();
            }
            Some(("psi", psi))
        }
        (ColumnStats::Category(a), ColumnStats::Category(b)) => {
            let mut names: Vec<&str> = a.frequencies.iter().map(|(c, _)| c.as_str()).collect();
            for (c, _) in &b.frequencies {
                if !names.contains(&c.as_str()) {
                    names.push(c);
                }
            }
            let counts = |s: &CategoryStats| -> Vec<f64> {
                names
                    .iter()
                    .map(|n| {
                        s.frequencies
                            .iter()
                            .find(|(c, _)| c == n)
                            .map_or(0.0, |(_, k)| *k as f64)
                    })
                    .collect()
            };
            Some(("js", js_distance(&counts(a), &counts(b))))
        }
        _ => None,
    }
}

/// The share of a distribution at or below `value`, interpolated
/// linearly between its percentiles (0 %, 1 %, ..., 100 %).
fn share_at_most(percentiles: &[f64], value: f64) -> f64 {
    let last = percentiles.len() - 1;
    let at_or_below = percentiles.partition_point(|&p| p <= value);
    match at_or_below {
        0 => 0.0,
        k if k > last => 1.0,
        k => {
            let (low, high) = (percentiles[k - 1], percentiles[k]);
            let within = if high > low {
                (value - low) / (high - low)
            } else {
                0.0
            };
            ((k - 1) as f64 + within) / last as f64
        }
    }
}

/// Whether enough of the columns drifted for the dataset to count as
/// drifted, and the share that did.
pub fn dataset(columns: &[ColumnDrift], limits: &Thresholds) -> (bool, f64) {
    let measured: Vec<&ColumnDrift> = columns.iter().filter(|c| c.rows > 0).collect();
    if measured.is_empty() {
        return (false, 0.0);
    }
    let share = measured
        .iter()
        .filter(|c| c.status == Status::Drift)
        .count() as f64
        / measured.len() as f64;
    (share >= limits.share, share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::stats;

    fn reference(values: &[f64]) -> NumericStats {
        stats::numeric(&mut values.to_vec(), 0)
    }

    /// A deterministic bell-shaped sample: quantiles of a logistic
    /// distribution.
    fn spread(n: usize, centre: f64, width: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let u = (i as f64 + 0.5) / n as f64;
                centre + width * (u / (1.0 - u)).ln()
            })
            .collect()
    }

    #[test]
    fn the_same_distribution_is_stable_and_a_shifted_one_drifts() {
        let limits = Thresholds::default();
        let train = reference(&spread(5000, 0.0, 1.0));
        let same = numeric(&train, &mut spread(2000, 0.0, 1.0), &limits).unwrap();
        assert!(same.psi.unwrap() < 0.01, "{same:?}");
        assert!(same.ks.unwrap() < 0.02, "{same:?}");
        assert!(same.ks_p_value.unwrap() > 0.5, "{same:?}");
        assert_eq!(same.status, Status::Stable);
        let shifted = numeric(&train, &mut spread(2000, 1.5, 1.0), &limits).unwrap();
        assert!(shifted.psi.unwrap() > 0.25, "{shifted:?}");
        assert!(shifted.ks.unwrap() > 0.2, "{shifted:?}");
        assert!(shifted.ks_p_value.unwrap() < 1e-6, "{shifted:?}");
        assert_eq!(shifted.status, Status::Drift);
    }

    #[test]
    fn repeated_values_compared_with_themselves_do_not_drift() {
        let values: Vec<f64> = (0..150)
            .map(|i| f64::from((i * 7) % 12) / 4.0 + 2.0)
            .collect();
        let train = reference(&values);
        let again = numeric(&train, &mut values.clone(), &Thresholds::default()).unwrap();
        // The snapshot keeps 101 percentiles, so its distribution is exact
        // to about a hundredth; before steps were read on both sides, this
        // gap was 0.17 and the column drifted against itself.
        assert!(again.ks.unwrap() < 0.02, "{again:?}");
        assert_eq!(again.psi, Some(0.0));
        assert_eq!(again.status, Status::Stable);
    }

    #[test]
    fn many_rows_of_the_same_distribution_do_not_drift() {
        // Five levels, 100,000 rows each side, the same shares: the
        // percentiles put the gap at 0.01, which at this many rows would
        // be a p-value of 0.0002 if taken as evidence.
        let values: Vec<f64> = (0..100_000).map(|i| f64::from((i * 7919) % 5)).collect();
        let train = reference(&values);
        let again = numeric(&train, &mut values.clone(), &Thresholds::default()).unwrap();
        assert_eq!(again.status, Status::Stable, "{again:?}");
        assert!(again.ks_p_value.unwrap() > 0.05, "{again:?}");
    }

    #[test]
    fn psi_is_computed_over_the_training_deciles() {
        // Training: 0..100, deciles at 9.9, 19.8, ...; recent: all in the
        // lowest decile, so one bin holds everything: PSI by hand.
        let train = reference(&(0..100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(train.bin_shares.len(), 10);
        assert!(train.bin_shares.iter().all(|&s| (s - 0.1).abs() < 1e-12));
        let got = numeric(&train, &mut vec![1.0; 50], &Thresholds::default()).unwrap();
        let by_hand = (1.0 - 0.1) * (1.0f64 / 0.1).ln() + 9.0 * (1e-4 - 0.1) * (1e-4f64 / 0.1).ln();
        assert!(
            (got.psi.unwrap() - by_hand).abs() < 1e-9,
            "{got:?} {by_hand}"
        );
        // The picture of it: ten bins, a tenth of training in each, all the
        // recent rows in the first.
        let bins = &got.distribution;
        assert_eq!(bins.len(), 10);
        assert!(bins.iter().all(|b| (b.training - 0.1).abs() < 1e-12));
        assert_eq!(bins[0].recent, 1.0);
        assert!(bins[1..].iter().all(|b| b.recent == 0.0));
        assert_eq!(bins[0].bin, "≤ 9.9");
        assert_eq!(bins[1].bin, "9.9 – 19.8");
        assert!(bins[9].bin.starts_with("> "));
    }

    #[test]
    fn ks_p_values_match_known_figures() {
        // scipy.special.kolmogorov(1.0) = 0.26999967...; with n = m large
        // the Stephens term vanishes.
        let n = 2_000_000;
        let d = 1.0 / ((n as f64 * n as f64 / (2 * n) as f64).sqrt());
        assert!((ks_p_value(d, n, n) - 0.2699996716).abs() < 1e-3);
        assert_eq!(ks_p_value(0.0, 10, 10), 1.0);
        assert!(ks_p_value(1.0, 100, 100) < 1e-10);
    }

    #[test]
    fn js_distance_is_zero_for_the_same_mix_and_one_for_disjoint_ones() {
        let train = CategoryStats {
            count: 100,
            nulls: 0,
            frequencies: vec![("a".into(), 50), ("b".into(), 50)],
        };
        let limits = Thresholds::default();
        let same = categorical(&train, ["a", "b", "a", "b"].into_iter(), &limits);
        assert!(same.js.unwrap() < 1e-12);
        assert_eq!(same.status, Status::Stable);
        // Unlisted categories count as "(other)", which training never saw.
        let new = categorical(&train, ["x", "y", "z"].into_iter(), &limits);
        assert!((new.js.unwrap() - 1.0).abs() < 1e-12, "{new:?}");
        assert_eq!(new.status, Status::Drift);
        let shares: Vec<(&str, f64, f64)> = new
            .distribution
            .iter()
            .map(|b| (b.bin.as_str(), b.training, b.recent))
            .collect();
        assert_eq!(
            shares,
            vec![("a", 0.5, 0.0), ("b", 0.5, 0.0), ("(other)", 0.0, 1.0)]
        );
    }

    #[test]
    fn the_dataset_drifts_when_half_its_measured_columns_do() {
        let limits = Thresholds::default();
        let column = |status, rows| ColumnDrift {
            rows,
            status,
            ..ColumnDrift::unmeasured()
        };
        let columns = [
            column(Status::Drift, 5),
            column(Status::Stable, 5),
            column(Status::Drift, 0),
        ];
        assert_eq!(dataset(&columns, &limits), (true, 0.5));
        assert_eq!(dataset(&columns[1..], &limits), (false, 0.0));
    }
    #[test]
    fn a_snapshot_compared_with_itself_has_not_moved_and_a_shifted_one_has() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64 / 10.0).collect();
        let shifted: Vec<f64> = values.iter().map(|v| v + 30.0).collect();
        let a = ColumnStats::Numeric(reference(&values));
        let same = between_snapshots(&a, &a).unwrap();
        assert_eq!(same.0, "psi");
        assert!(same.1 < 0.01, "{same:?}");
        let moved = between_snapshots(&a, &ColumnStats::Numeric(reference(&shifted))).unwrap();
        assert!(moved.1 > 0.25, "{moved:?}");
        let cats = |f: &[(&str, usize)]| {
            ColumnStats::Category(CategoryStats {
                count: f.iter().map(|x| x.1).sum(),
                nulls: 0,
                frequencies: f.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            })
        };
        let before = cats(&[("a", 50), ("b", 50)]);
        assert_eq!(between_snapshots(&before, &before), Some(("js", 0.0)));
        let after = between_snapshots(&before, &cats(&[("b", 50), ("c", 50)])).unwrap();
        assert!(after.1 > 0.5, "{after:?}");
        assert_eq!(between_snapshots(&before, &a), None);
    }
}
