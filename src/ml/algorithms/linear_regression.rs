//! `linear_regression`: ordinary least squares, by a QR decomposition built
//! one row at a time with Givens rotations.
//!
//! linfa-linear 0.8.1, used before, appended a column of ones to a copy of
//! the rows and solved by Householder QR (linfa-linalg 0.2.1's
//! `least_squares_into`: `R·x = Qᵀ·y`; with fewer rows than columns, the
//! minimum-norm solution from the QR of the transpose). It had no interrupt
//! hook, and the rows were copied twice. Here each row is rotated into the
//! (features + 1)² triangle `R` and into `Qᵀ·y` as it is read, so the data
//! is never copied and the hook is asked every block of rows (each block
//! about the same work, whatever the width). Rotations are orthogonal like
//! linfa's reflections, so the solve is as well conditioned as linfa's; the
//! normal equations (`XᵀX·x = Xᵀy`), which could be summed in blocks just as
//! well, square the condition number, and on nearly collinear columns they
//! lose twice the digits (docs/algorithms.md has the measurements).
//! Rotations and reflections round differently, so coefficients agree with
//! linfa's to rounding (within 7e-13 on the comparison datasets), not bit
//! for bit. With fewer rows than columns the rows are few, and the
//! minimum-norm solution comes, as in linfa, from a Householder QR of the
//! transposed rows.

use serde::{Deserialize, Serialize};

use super::{AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "linear_regression",
    description: "ordinary least squares (QR by Givens rotations)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ParamSpec {
            name: "fit_intercept",
            kind: ParamKind::Boolean,
            default: "true",
        }],
    }],
    inputs: InputStyle::Scaled,
    fit,
    estimated_bytes,
};

/// The fitted coefficients. Kept as plain vectors so predicting one row is a
/// dot product with no ndarray allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
}

/// The triangle `R` and `Qᵀ·y`, the row being rotated in and the solution.
/// With fewer rows than columns, the transposed rows (fewer than width²
/// values) and their reflections instead.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let width = shape.features as u64 + 1;
    (2 * width * width + 4 * width) * 8
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let fit_intercept = data.params.boolean("fit_intercept").unwrap_or(true);
    data.interrupts.check()?;
    if data.rows.is_empty() {
        return Err(MlError::insufficient(
            "linear regression could not be fitted: there are no training rows",
        ));
    }
    let columns = Columns {
        data,
        features: data.dataset.width(),
        width: data.dataset.width() + fit_intercept as usize,
    };
    let mut solution = if data.rows.len() >= columns.width {
        least_squares(&columns)?
    } else {
        minimum_norm(&columns)?
    };
    let intercept = if fit_intercept {
        solution.pop().unwrap_or(0.0)
    } else {
        0.0
    };
    let model = LinearModel {
        intercept,
        coefficients: solution,
    };
    model.check_finite()?;
    Ok(Estimator::Linear(model))
}

/// The training rows, with a 1 appended for the intercept.
struct Columns<'a> {
    data: &'a TrainingData<'a>,
    features: usize,
    width: usize,
}

impl Columns<'_> {
    fn copy_row(&self, i: usize, out: &mut [f64]) {
        out[..self.features].copy_from_slice(self.data.dataset.row(i));
        if self.width > self.features {
            out[self.features] = 1.0;
        }
    }
}

fn singular() -> MlError {
    MlError::insufficient(
        "linear regression could not be fitted: the columns are linearly dependent",
    )
    .with_hint("check for constant or duplicated feature columns")
}

/// Rows between two interrupt checks: about 2^18 rotation steps each
/// (a fraction of a millisecond), whatever the width.
fn rows_per_check(width: usize) -> usize {
    ((1 << 18) / (width * width).max(1)).max(1)
}

/// `x` minimising `‖X·x − y‖`, for at least as many rows as columns.
fn least_squares(columns: &Columns<'_>) -> MlResult<Vec<f64>> {
    let width = columns.width;
    let data = columns.data;
    // Row k of `r` is row k of the triangle; entries left of the diagonal
    // stay zero.
    let mut r = vec![0.0f64; width * width];
    let mut qty = vec![0.0; width];
    let mut row = vec![0.0f64; width];
    let every = rows_per_check(width);
    for (n, &i) in data.rows.iter().enumerate() {
        if n % every == 0 {
            data.interrupts.check()?;
        }
        columns.copy_row(i, &mut row);
        let mut y = data.dataset.label_value(i);
        for k in 0..width {
            let v = row[k];
            if v == 0.0 {
                continue;
            }
            // The rotation that zeroes `v` against the diagonal.
            let d = r[k * width + k];
            let h = length(d, v);
            let (c, s) = (d / h, v / h);
            r[k * width + k] = h;
            for j in k + 1..width {
                let (a, b) = (r[k * width + j], row[j]);
                r[k * width + j] = c * a + s * b;
                row[j] = c * b - s * a;
            }
            let a = qty[k];
            qty[k] = c * a + s * y;
            y = c * y - s * a;
        }
    }
    data.interrupts.check()?;
    // `R·x = Qᵀ·y`, from the bottom row up. A zero pivot is a column that
    // is a combination of the ones before it (linfa refused it too).
    if (0..width).any(|k| r[k * width + k] == 0.0) {
        return Err(singular());
    }
    let mut x = vec![0.0; width];
    for k in (0..width).rev() {
        let mut sum = qty[k];
        for j in k + 1..width {
            sum -= r[k * width + j] * x[j];
        }
        x[k] = sum / r[k * width + k];
    }
    Ok(x)
}

/// `√(a² + b²)`. `hypot` cannot overflow or underflow where the squares
/// would, but it cost a third of the fit's time (300,000 rows × 10
/// features: 0.081 s against 0.052 s), so it is kept for those cases.
fn length(a: f64, b: f64) -> f64 {
    let squares = a * a + b * b;
    if squares.is_finite() && squares >= f64::MIN_POSITIVE {
        squares.sqrt()
    } else {
        a.hypot(b)
    }
}

/// The shortest `x` with `X·x = y`, for fewer rows than columns: with
/// `Xᵀ = Q·R`, `Rᵀ·m = y` and `x = Q·m`.
fn minimum_norm(columns: &Columns<'_>) -> MlResult<Vec<f64>> {
    let (width, data) = (columns.width, columns.data);
    let n = data.rows.len();
    // Column k of Xᵀ is training row k; each becomes its reflection's
    // vector below the diagonal and R's column above it.
    let mut a = vec![0.0; n * width];
    for (k, &i) in data.rows.iter().enumerate() {
        columns.copy_row(i, &mut a[k * width..(k + 1) * width]);
    }
    let mut diagonal = vec![0.0; n];
    let mut scale = vec![0.0; n];
    for k in 0..n {
        data.interrupts.check()?;
        let (done, rest) = a.split_at_mut((k + 1) * width);
        let v = &mut done[k * width + k..];
        let norm = v.iter().fold(0.0f64, |norm, x: &f64| norm.hypot(*x));
        if norm == 0.0 {
            return Err(singular());
        }
        // Reflect onto -sign(v₀)·‖v‖ so that v₀ − that does not cancel.
        let alpha = if v[0] > 0.0 { -norm } else { norm };
        v[0] -= alpha;
        let vtv = v.iter().map(|x| x * x).sum::<f64>();
        diagonal[k] = alpha;
        scale[k] = 2.0 / vtv;
        for column in rest.chunks_exact_mut(width) {
            let column = &mut column[k..];
            let f = scale[k] * dot(v, column);
            column
                .iter_mut()
                .zip(v.iter())
                .for_each(|(c, v)| *c -= f * v);
        }
    }
    // Rᵀ·m = y, top row down; R[j][k] (j < k) sits in column k, row j.
    let mut m = vec![0.0; width];
    for k in 0..n {
        let mut sum = data.dataset.label_value(data.rows[k]);
        for j in 0..k {
            sum -= a[k * width + j] * m[j];
        }
        m[k] = sum / diagonal[k];
    }
    // x = H₀·H₁·…·Hₙ₋₁·(m, 0).
    for k in (0..n).rev() {
        let v = &a[k * width + k..(k + 1) * width];
        let f = scale[k] * dot(v, &m[k..]);
        m[k..].iter_mut().zip(v).for_each(|(x, v)| *x -= f * v);
    }
    Ok(m)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

impl LinearModel {
    pub fn check_finite(&self) -> MlResult<()> {
        if !self.intercept.is_finite() || self.coefficients.iter().any(|c| !c.is_finite()) {
            return Err(
                MlError::insufficient("the fit gave non-finite coefficients")
                    .with_hint("check for constant or duplicated feature columns"),
            );
        }
        Ok(())
    }

    pub fn validate(&self, n_features: usize) -> MlResult<()> {
        if self.coefficients.len() != n_features {
            return Err(MlError::corrupt(
                "artifact is not readable: coefficients do not match the features",
            ));
        }
        Ok(())
    }
}

impl Predictor for LinearModel {
    fn predict(&self, x: &[f64]) -> f64 {
        self.intercept
            + self
                .coefficients
                .iter()
                .zip(x)
                .map(|(c, v)| c * v)
                .sum::<f64>()
    }

    fn predict_proba(&self, _x: &[f64]) -> Option<Vec<f64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::ml::dataset::{Dataset, RawLabels};
    use crate::ml::Interrupts;

    fn fit_with(
        d: &Dataset,
        params: serde_json::Value,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<LinearModel> {
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params = Hyperparams::validate(
            "linear_regression",
            SPEC.params(Task::Regression).unwrap(),
            &params,
        )
        .unwrap();
        let Estimator::Linear(m) = fit(&TrainingData {
            dataset: d,
            rows: &rows,
            params: &params,
            seed: 0,
            threads: 1,
            memory: &crate::ml::MemoryBudget::unlimited(),
            interrupts,
        })?
        else {
            panic!("wrong estimator")
        };
        Ok(m)
    }

    fn dataset(width: usize, rows: Vec<Vec<f64>>, y: Vec<f64>) -> Dataset {
        Dataset::new(
            (0..width).map(|j| format!("x{j}")).collect(),
            rows.concat(),
            RawLabels::Values(y),
        )
        .unwrap()
    }

    #[test]
    fn recovers_a_plane() {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..50 {
            let (a, b) = (i as f64, ((i * 7) % 11) as f64);
            records.push(vec![a, b]);
            y.push(3.0 + 2.0 * a - 0.5 * b);
        }
        let m = fit_with(
            &dataset(2, records, y),
            serde_json::json!({}),
            &Interrupts::none(),
        )
        .unwrap();
        assert!((m.intercept - 3.0).abs() < 1e-8);
        assert!((m.coefficients[0] - 2.0).abs() < 1e-8);
        assert!((m.predict(&[1.0, 2.0]) - 4.0).abs() < 1e-8);
    }

    /// What linfa-linear 0.8.1 gave (printed with `{:?}`) on a noisy plane.
    /// Rotations round unlike its reflections, hence the margin.
    #[test]
    fn the_rotations_give_linfas_coefficients() {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let (a, b, c) = (
                (i % 20) as f64,
                ((i * 7) % 11) as f64,
                ((i * 13) % 17) as f64,
            );
            records.push(vec![a, b, c]);
            y.push(3.0 + 2.0 * a - 0.5 * b + ((i * 29) % 7) as f64 / 7.0);
        }
        let m = fit_with(
            &dataset(3, records, y),
            serde_json::json!({}),
            &Interrupts::none(),
        )
        .unwrap();
        let linfa = [
            3.4289199998291577,
            2.0004473393625277,
            -0.5009921484481763,
            -0.0004947423961422982,
        ];
        assert!((m.intercept - linfa[0]).abs() < 1e-12, "{m:?}");
        for (ours, linfa) in m.coefficients.iter().zip(&linfa[1..]) {
            assert!((ours - linfa).abs() < 1e-12, "{m:?}");
        }
    }

    #[test]
    fn fewer_rows_than_columns_give_the_shortest_solution() {
        // x0 = 1 and x1 + x2 = 2: the shortest such x is (1, 1, 1).
        let d = dataset(
            3,
            vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 1.0]],
            vec![1.0, 2.0],
        );
        let m = fit_with(
            &d,
            serde_json::json!({"fit_intercept": false}),
            &Interrupts::none(),
        )
        .unwrap();
        for c in &m.coefficients {
            assert!((c - 1.0).abs() < 1e-12, "{m:?}");
        }
        assert_eq!(m.intercept, 0.0);
    }

    #[test]
    fn a_column_of_zeros_is_refused() {
        let d = dataset(
            2,
            (0..20).map(|i| vec![i as f64, 0.0]).collect(),
            (0..20).map(|i| i as f64).collect(),
        );
        let err = fit_with(&d, serde_json::json!({}), &Interrupts::none()).unwrap_err();
        assert!(
            err.message.contains("linearly dependent"),
            "{}",
            err.message
        );
    }

    /// 63 features and an intercept: a check every 64 rows.
    fn wide() -> Dataset {
        let rows: Vec<Vec<f64>> = (0..1000)
            .map(|i| (0..63).map(|j| ((i * 31 + j * 17) % 101) as f64).collect())
            .collect();
        let y = rows.iter().map(|r| r.iter().sum::<f64>()).collect();
        dataset(63, rows, y)
    }

    #[test]
    fn an_interrupt_stops_the_fit() {
        let calls = Cell::new(0);
        let stop_after_five = || {
            calls.set(calls.get() + 1);
            if calls.get() > 5 {
                Err(MlError::invalid("canceled"))
            } else {
                Ok(())
            }
        };
        let err = fit_with(
            &wide(),
            serde_json::json!({}),
            &Interrupts::new(&stop_after_five),
        )
        .unwrap_err();
        assert_eq!(err.message, "canceled");
        assert_eq!(calls.get(), 6);
    }

    #[test]
    fn the_hook_is_asked_every_block_of_rows() {
        let calls = Cell::new(0);
        let count = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        fit_with(&wide(), serde_json::json!({}), &Interrupts::new(&count)).unwrap();
        assert_eq!(rows_per_check(64), 64);
        assert!(calls.get() >= 1000 / 64, "{}", calls.get());
    }
}
