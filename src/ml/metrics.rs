//! Test-split metrics with scikit-learn's definitions, so numbers can be
//! checked against it. linfa's `ConfusionMatrix::f1_score` is the harmonic
//! mean of macro precision and macro recall, in f32, and is NaN when a class
//! is never predicted; that is not the macro F1 users know, so these few
//! formulas are written out here.

use std::collections::BTreeMap;

pub type Metrics = BTreeMap<String, f64>;

/// `predicted[i] == n_classes` stands for a class the model knows but the
/// data does not: always wrong, and no class's false positive.
pub fn classification(
    truth: &[usize],
    predicted: &[usize],
    n_classes: usize,
    proba: Option<&[Vec<f64>]>,
) -> Metrics {
    let n = truth.len().max(1) as f64;
    let mut tp = vec![0usize; n_classes];
    let mut fp = vec![0usize; n_classes];
    let mut fn_ = vec![0usize; n_classes];
    let mut seen = vec![false; n_classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        seen[t] = true;
        if p == t {
            tp[t] += 1;
        } else {
            fn_[t] += 1;
            if p < n_classes {
                fp[p] += 1;
                seen[p] = true;
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let classes: Vec<usize> = (0..n_classes).filter(|&c| seen[c]).collect();
    let per_class = |f: &dyn Fn(usize) -> f64| {
        classes.iter().map(|&c| f(c)).sum::<f64>() / classes.len().max(1) as f64
    };
    let precision = |c: usize| ratio(tp[c], tp[c] + fp[c]);
    let recall = |c: usize| ratio(tp[c], tp[c] + fn_[c]);
    let f1 = |c: usize| ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn_[c]);

    let mut m = Metrics::new();
    m.insert("accuracy".into(), tp.iter().sum::<usize>() as f64 / n);
    m.insert("f1".into(), per_class(&f1));
    m.insert("precision".into(), per_class(&precision));
    m.insert("recall".into(), per_class(&recall));
    if let (2, Some(proba)) = (n_classes, proba) {
        let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        let scores: Vec<f64> = proba.iter().map(|p| p[1]).collect();
        if let Some(auc) = roc_auc(&positive, &scores) {
            m.insert("roc_auc".into(), auc);
        }
        m.insert("log_loss".into(), log_loss(truth, proba));
    }
    m
}

pub fn regression(truth: &[f64], predicted: &[f64]) -> Metrics {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let ss_res: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let ss_tot: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    // scikit-learn's force_finite: a constant truth scores 1 if matched, else 0.
    let r2 = if ss_tot == 0.0 {
        if ss_res == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - ss_res / ss_tot
    };
    let mae = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).abs())
        .sum::<f64>()
        / n;
    let mut m = Metrics::new();
    m.insert("r2".into(), r2);
    m.insert("mae".into(), mae);
    m.insert("rmse".into(), (ss_res / n).sqrt());
    m
}

/// Area under the ROC curve from ranks (Mann–Whitney), ties shared.
fn roc_auc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let shared_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += order[i..=j].iter().filter(|&&k| positive[k]).count() as f64 * shared_rank;
        i = j + 1;
    }
    let n_pos = n_pos as f64;
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg as f64))
}

fn log_loss(truth: &[usize], proba: &[Vec<f64>]) -> f64 {
    const EPS: f64 = 1e-15;
    let n = truth.len().max(1) as f64;
    -truth
        .iter()
        .zip(proba)
        .map(|(&t, p)| p[t].clamp(EPS, 1.0 - EPS).ln())
        .sum::<f64>()
        / n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn macro_scores_match_scikit_learn() {
        // sklearn: f1_score([0,0,1,1,2,2],[0,1,1,1,2,0], average='macro') = 0.6555555555555556
        let m = classification(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 2, 0], 3, None);
        close(m["accuracy"], 4.0 / 6.0);
        close(m["f1"], 0.655_555_555_555_555_6);
        close(m["precision"], (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
        close(m["recall"], (0.5 + 1.0 + 0.5) / 3.0);
        assert!(!m.contains_key("roc_auc"));
    }

    #[test]
    fn binary_adds_auc_and_log_loss() {
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
        let proba: Vec<Vec<f64>> = [0.1, 0.4, 0.35, 0.8]
            .iter()
            .map(|&p| vec![1.0 - p, p])
            .collect();
        let m = classification(&[0, 0, 1, 1], &[0, 0, 0, 1], 2, Some(&proba));
        close(m["roc_auc"], 0.75);
        // log_loss([0,0,1,1],[.1,.4,.35,.8]) = 0.47228795...
        let expected = -((0.9f64).ln() + (0.6f64).ln() + (0.35f64).ln() + (0.8f64).ln()) / 4.0;
        close(m["log_loss"], expected);
    }

    #[test]
    fn tied_scores_share_ranks() {
        close(roc_auc(&[false, true], &[0.5, 0.5]).unwrap(), 0.5);
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
    }

    #[test]
    fn unknown_predictions_are_wrong() {
        let m = classification(&[0, 1], &[2, 1], 2, None);
        close(m["accuracy"], 0.5);
        close(m["f1"], (0.0 + 1.0) / 2.0);
    }

    #[test]
    fn regression_scores() {
        let m = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]);
        close(m["r2"], 0.948_608_137_044_967_9);
        close(m["mae"], 0.5);
        close(m["rmse"], (0.375f64).sqrt());
        close(regression(&[1.0, 1.0], &[1.0, 1.0])["r2"], 1.0);
        close(regression(&[1.0, 1.0], &[1.0, 2.0])["r2"], 0.0);
    }
}
