//! `ridge`, `lasso` and `elastic_net`: penalised least squares by
//! coordinate descent. All three minimise scikit-learn's elastic-net
//! objective,
//! `1/(2n)·‖y − Xw − b‖² + alpha·l1_ratio·‖w‖₁ + alpha·(1 − l1_ratio)/2·‖w‖²`;
//! lasso is `l1_ratio = 1`. Ridge is `l1_ratio = 0` with scikit-learn's
//! `Ridge` objective, `‖y − Xw − b‖² + alpha·‖w‖²`, which has no 1/n: its
//! alpha is divided by the training rows before it reaches the solver, so it
//! means what it means in scikit-learn.
//!
//! The solver is linfa-elasticnet 0.8.1's `coordinate_descent` and
//! `duality_gap`, ported so that Postgres can stop it: linfa has no hook, and
//! one lasso with tolerance 0 ignored a `statement_timeout` for its whole
//! `max_iterations`. Here the hook is asked before every coordinate update
//! (one pass over one column) and every column of the duality gap. The
//! arithmetic is linfa's, operation for operation and in the same order
//! (ndarray sums a strided column in index order and a contiguous vector
//! eight lanes at a time, and the port does the same), so a fit gives
//! linfa's coefficients bit for bit; the columns are stored column-major,
//! which makes each pass read memory in sequence. linfa's fit also inverted
//! XᵀX for coefficient variances nobody read; that is gone.

use ndarray::{Array1, ArrayView1, Axis};

use super::{AlgorithmSpec, Estimator, InputStyle, LinearModel, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{Interrupts, MlError, MlResult, Task};

const ALPHA: ParamSpec = ParamSpec {
    name: "alpha",
    kind: ParamKind::Float {
        min: 0.0,
        max: 1e9,
        nullable: false,
    },
    default: "1.0",
};
const L1_RATIO: ParamSpec = ParamSpec {
    name: "l1_ratio",
    kind: ParamKind::Float {
        min: 0.0,
        max: 1.0,
        nullable: false,
    },
    default: "0.5",
};
const MAX_ITERATIONS: ParamSpec = ParamSpec {
    name: "max_iterations",
    kind: ParamKind::Integer {
        min: 1,
        max: 1_000_000,
        nullable: false,
    },
    default: "1000",
};
const TOLERANCE: ParamSpec = ParamSpec {
    name: "tolerance",
    kind: ParamKind::Float {
        min: 0.0,
        max: 1.0,
        nullable: false,
    },
    default: "0.0001",
};
const FIT_INTERCEPT: ParamSpec = ParamSpec {
    name: "fit_intercept",
    kind: ParamKind::Boolean,
    default: "true",
};

pub const RIDGE: AlgorithmSpec = AlgorithmSpec {
    name: "ridge",
    description: "least squares with an L2 penalty (coordinate descent, l1_ratio 0)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ALPHA, MAX_ITERATIONS, TOLERANCE, FIT_INTERCEPT],
    }],
    inputs: InputStyle::Scaled,
    fit: |data| fit(data, Some(0.0)),
    estimated_bytes,
};

pub const LASSO: AlgorithmSpec = AlgorithmSpec {
    name: "lasso",
    description: "least squares with an L1 penalty (coordinate descent, l1_ratio 1)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ALPHA, MAX_ITERATIONS, TOLERANCE, FIT_INTERCEPT],
    }],
    inputs: InputStyle::Scaled,
    fit: |data| fit(data, Some(1.0)),
    estimated_bytes,
};

pub const ELASTIC_NET: AlgorithmSpec = AlgorithmSpec {
    name: "elastic_net",
    description: "least squares with L1 and L2 penalties (coordinate descent)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ALPHA, L1_RATIO, MAX_ITERATIONS, TOLERANCE, FIT_INTERCEPT],
    }],
    inputs: InputStyle::Scaled,
    fit: |data| fit(data, None),
    estimated_bytes,
};

/// The centred columns, the targets (centred in place) and the residuals.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let (rows, features) = (shape.rows as u64, shape.features as u64);
    (rows * features + 2 * rows + 4 * features) * 8
}

/// `l1_ratio`: fixed by the algorithm, or the hyper-parameter's.
fn fit(data: &TrainingData<'_>, l1_ratio: Option<f64>) -> MlResult<Estimator> {
    let params = data.params;
    let fit_intercept = params.boolean("fit_intercept").unwrap_or(true);
    data.interrupts.check()?;
    if data.rows.is_empty() {
        return Err(MlError::insufficient(
            "the elastic net could not be fitted: there are no training rows",
        ));
    }
    // The solver takes the intercept as the mean of y, as linfa-elasticnet
    // did, which is only right for centred features: so they are centred
    // here, as scikit-learn does, and the intercept moved back after.
    let x = Columns::centred(data, fit_intercept)?;
    let mut y: Vec<f64> = data
        .rows
        .iter()
        .map(|&i| data.dataset.label_value(i))
        .collect();
    let y_mean = match ArrayView1::from(&y[..]).mean_axis(Axis(0)) {
        Some(mean) if fit_intercept => mean.into_scalar(),
        _ => 0.0,
    };
    if fit_intercept {
        y.iter_mut().for_each(|v| *v -= y_mean);
    }
    let alpha = params.float("alpha").unwrap_or(1.0);
    let penalty = match l1_ratio {
        Some(0.0) => alpha / data.rows.len() as f64,
        _ => alpha,
    };
    let w = coordinate_descent(
        &x,
        &y,
        &Settings {
            tolerance: params.float("tolerance").unwrap_or(1e-4),
            max_steps: params.integer("max_iterations").unwrap_or(1000) as u32,
            l1_ratio: l1_ratio.or(params.float("l1_ratio")).unwrap_or(0.5),
            penalty,
        },
        data.interrupts,
    )?;
    let model = LinearModel {
        intercept: y_mean - w.dot(&x.means),
        coefficients: w.to_vec(),
    };
    model.check_finite()?;
    Ok(Estimator::Linear(model))
}

struct Settings {
    tolerance: f64,
    max_steps: u32,
    l1_ratio: f64,
    penalty: f64,
}

/// The training rows' features, column after column, each minus its mean
/// (or not, without an intercept).
struct Columns {
    values: Vec<f64>,
    rows: usize,
    features: usize,
    means: Array1<f64>,
}

/// Rows between two interrupt checks while the columns are copied.
const CHECK_EVERY: usize = 4096;

impl Columns {
    fn centred(data: &TrainingData<'_>, fit_intercept: bool) -> MlResult<Columns> {
        let (rows, features) = (data.rows.len(), data.dataset.width());
        // The old code's `mean_axis(Axis(0))` on the row-major records: each
        // column summed row after row, then divided.
        let mut means = Array1::zeros(features);
        if fit_intercept {
            for (k, &i) in data.rows.iter().enumerate() {
                if k % CHECK_EVERY == 0 {
                    data.interrupts.check()?;
                }
                for (sum, v) in means.iter_mut().zip(data.dataset.row(i)) {
                    *sum += v;
                }
            }
            means.mapv_inplace(|sum: f64| sum / rows as f64);
        }
        let mut values = vec![0.0; rows * features];
        for (k, &i) in data.rows.iter().enumerate() {
            if k % CHECK_EVERY == 0 {
                data.interrupts.check()?;
            }
            for (j, v) in data.dataset.row(i).iter().enumerate() {
                values[j * rows + k] = v - means[j];
            }
        }
        Ok(Columns {
            values,
            rows,
            features,
            means,
        })
    }

    fn column(&self, j: usize) -> &[f64] {
        &self.values[j * self.rows..(j + 1) * self.rows]
    }

    /// `x_j · v` summed as ndarray summed linfa's column view: in index
    /// order when the column is strided in the row-major records (two
    /// features or more), eight lanes at a time when it is contiguous (one
    /// feature).
    fn dot(&self, j: usize, v: &[f64]) -> f64 {
        let column = self.column(j);
        if self.features == 1 {
            return unrolled_dot(column, v);
        }
        column.iter().zip(v).fold(0.0, |sum, (x, v)| sum + x * v)
    }
}

/// ndarray's dot of two contiguous vectors (eight partial sums).
fn unrolled_dot(a: &[f64], b: &[f64]) -> f64 {
    ArrayView1::from(a).dot(&ArrayView1::from(b))
}

/// approx's `abs_diff_eq!(value, 0.0)`, which linfa uses to skip zeros.
fn is_zero(value: f64) -> bool {
    value.abs() <= f64::EPSILON
}

/// linfa-elasticnet 0.8.1's `coordinate_descent`, with the interrupt hook
/// asked before each coordinate.
fn coordinate_descent(
    x: &Columns,
    y: &[f64],
    settings: &Settings,
    interrupts: &Interrupts<'_>,
) -> MlResult<Array1<f64>> {
    let Settings {
        tolerance,
        max_steps,
        l1_ratio,
        penalty,
    } = *settings;
    let n_samples = x.rows as f64;
    let mut w = Array1::<f64>::zeros(x.features);
    let mut r = y.to_vec();
    let mut norm_cols_x = Vec::with_capacity(x.features);
    for j in 0..x.features {
        interrupts.check()?;
        norm_cols_x.push(x.dot(j, x.column(j)));
    }
    let mut n_steps = 0u32;
    let d_w_tol = tolerance;
    let tol = tolerance * unrolled_dot(y, y);
    while n_steps < max_steps {
        let mut w_max = 0.0f64;
        let mut d_w_max = 0.0f64;
        for j in 0..x.features {
            interrupts.check()?;
            if is_zero(norm_cols_x[j]) {
                continue;
            }
            let old_w_j = w[j];
            let x_j = x.column(j);
            if !is_zero(old_w_j) {
                scaled_add(&mut r, old_w_j, x_j);
            }
            let tmp = x.dot(j, &r);
            w[j] = tmp.signum() * f64::max(tmp.abs() - n_samples * l1_ratio * penalty, 0.0)
                / (norm_cols_x[j] + n_samples * (1.0 - l1_ratio) * penalty);
            if !is_zero(w[j]) {
                scaled_add(&mut r, -w[j], x_j);
            }
            let d_w_j = (w[j] - old_w_j).abs();
            d_w_max = f64::max(d_w_max, d_w_j);
            w_max = f64::max(w_max, w[j].abs());
        }
        n_steps += 1;

        if n_steps == max_steps - 1 || is_zero(w_max) || d_w_max / w_max < d_w_tol {
            // One of the cheap criteria holds; the duality gap decides.
            let gap = duality_gap(x, y, &w, &r, l1_ratio, penalty, interrupts)?;
            if gap < tol {
                break;
            }
        }
    }
    Ok(w)
}

/// ndarray's `scaled_add`: `r += alpha · x`, element by element.
fn scaled_add(r: &mut [f64], alpha: f64, x: &[f64]) {
    for (r, x) in r.iter_mut().zip(x) {
        *r += alpha * x;
    }
}

/// linfa-elasticnet 0.8.1's `duality_gap`.
fn duality_gap(
    x: &Columns,
    y: &[f64],
    w: &Array1<f64>,
    r: &[f64],
    l1_ratio: f64,
    penalty: f64,
    interrupts: &Interrupts<'_>,
) -> MlResult<f64> {
    let half = 0.5;
    let n_samples = x.rows as f64;
    let l1_reg = l1_ratio * penalty * n_samples;
    let l2_reg = (1.0 - l1_ratio) * penalty * n_samples;
    // linfa's `(x.t().dot(&r) - &w * l2_reg).norm_max()`.
    let mut dual_norm_xta = 0.0f64;
    for j in 0..x.features {
        interrupts.check()?;
        let xta = x.dot(j, r) - w[j] * l2_reg;
        dual_norm_xta = xta.abs().max(dual_norm_xta);
    }
    let r_norm2 = unrolled_dot(r, r);
    let w_norm2 = w.dot(w);
    let (const_, mut gap) = if dual_norm_xta > l1_reg {
        let const_ = l1_reg / dual_norm_xta;
        let a_norm2 = r_norm2 * const_ * const_;
        (const_, half * (r_norm2 + a_norm2))
    } else {
        (1.0, r_norm2)
    };
    let l1_norm: f64 = w.iter().map(|w| w.abs()).sum();
    gap += l1_reg * l1_norm - const_ * unrolled_dot(r, y)
        + half * l2_reg * (1.0 + const_ * const_) * w_norm2;
    Ok(gap)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::ml::algorithms::Predictor;
    use crate::ml::dataset::{Dataset, RawLabels};

    fn plane() -> Dataset {
        plane_plus(|_| 0.0)
    }

    fn plane_plus(error: fn(usize) -> f64) -> Dataset {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let (a, b, noise) = (
                (i % 20) as f64,
                ((i * 7) % 11) as f64,
                ((i * 13) % 17) as f64,
            );
            records.extend([a, b, noise]);
            y.push(3.0 + 2.0 * a - 0.5 * b + error(i));
        }
        Dataset::new(
            vec!["a".into(), "b".into(), "noise".into()],
            records,
            RawLabels::Values(y),
        )
        .unwrap()
    }

    fn fit_with(
        spec: &AlgorithmSpec,
        d: &Dataset,
        params: serde_json::Value,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<LinearModel> {
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params =
            Hyperparams::validate(spec.name, spec.params(Task::Regression).unwrap(), &params)
                .unwrap();
        let Estimator::Linear(m) = (spec.fit)(&TrainingData {
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

    fn fit_spec(spec: &AlgorithmSpec, alpha: f64) -> LinearModel {
        fit_with(
            spec,
            &plane(),
            serde_json::json!({"alpha": alpha}),
            &Interrupts::none(),
        )
        .unwrap()
    }

    #[test]
    fn a_small_penalty_recovers_the_plane_and_lasso_drops_the_noise() {
        for spec in [&RIDGE, &LASSO, &ELASTIC_NET] {
            let m = fit_spec(spec, 1e-6);
            assert!(
                (m.coefficients[0] - 2.0).abs() < 1e-3,
                "{}: {m:?}",
                spec.name
            );
            assert!(
                (m.predict(&[1.0, 2.0, 5.0]) - 4.0).abs() < 1e-2,
                "{}",
                spec.name
            );
        }
        let lasso = fit_spec(&LASSO, 0.5);
        assert_eq!(lasso.coefficients[2], 0.0, "{lasso:?}");
        let ridge = fit_spec(&RIDGE, 0.5);
        assert_ne!(ridge.coefficients[2], 0.0, "{ridge:?}");
    }

    #[test]
    fn an_interrupt_stops_a_fit_that_would_run_a_million_iterations() {
        for spec in [&RIDGE, &LASSO, &ELASTIC_NET] {
            let calls = Cell::new(0);
            let stop_after_fifty = || {
                calls.set(calls.get() + 1);
                if calls.get() > 50 {
                    Err(MlError::invalid("canceled"))
                } else {
                    Ok(())
                }
            };
            let err = fit_with(
                spec,
                &plane(),
                serde_json::json!({"alpha": 1e-6, "tolerance": 0.0, "max_iterations": 1_000_000}),
                &Interrupts::new(&stop_after_fifty),
            )
            .unwrap_err();
            assert_eq!(err.message, "canceled", "{}", spec.name);
            assert_eq!(calls.get(), 51, "{}", spec.name);
        }
    }

    #[test]
    fn the_hook_is_asked_at_every_coordinate_of_every_iteration() {
        for spec in [&RIDGE, &LASSO, &ELASTIC_NET] {
            let calls = Cell::new(0);
            let count = || {
                calls.set(calls.get() + 1);
                Ok(())
            };
            // Tolerance 0: all 40 iterations run, each over 3 coordinates.
            fit_with(
                spec,
                &plane(),
                serde_json::json!({"alpha": 1e-6, "tolerance": 0.0, "max_iterations": 40}),
                &Interrupts::new(&count),
            )
            .unwrap();
            assert!(calls.get() >= 40 * 3, "{}: {}", spec.name, calls.get());
        }
    }

    /// The coefficients linfa-elasticnet 0.8.1 gave on a noisy plane
    /// (printed with `{:?}`, which round-trips): the port does linfa's
    /// arithmetic in linfa's order, so they must come back bit for bit.
    #[test]
    fn the_port_gives_linfas_coefficients_exactly() {
        let d = plane_plus(|i| ((i * 29) % 7) as f64 / 7.0);
        let linfa: [(&AlgorithmSpec, serde_json::Value, f64, [f64; 3]); 3] = [
            (
                &RIDGE,
                serde_json::json!({"alpha": 3.0}),
                3.433931817469496,
                [
                    1.999543368029167,
                    -0.5002380048252747,
                    -0.0005177946491046261,
                ],
            ),
            (
                &LASSO,
                serde_json::json!({"alpha": 0.2}),
                3.383072802350533,
                [1.994394772064168, -0.48105063644421525, 0.0],
            ),
            (
                &ELASTIC_NET,
                serde_json::json!({"alpha": 0.3, "l1_ratio": 0.7, "fit_intercept": false}),
                0.0,
                [2.1032844640594206, -0.2842365582876978, 0.12175268078047417],
            ),
        ];
        for (spec, params, intercept, coefficients) in linfa {
            let m = fit_with(spec, &d, params.clone(), &Interrupts::none()).unwrap();
            assert_eq!(m.intercept, intercept, "{} {params}", spec.name);
            assert_eq!(m.coefficients, coefficients, "{} {params}", spec.name);
        }
    }
}
