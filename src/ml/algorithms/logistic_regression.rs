//! `logistic_regression`: multinomial (softmax) logistic regression with an
//! L2 penalty, fitted by L-BFGS. Two classes give the usual binary model.
//!
//! This is linfa-logistic 0.8.1's `MultiLogisticRegression`, ported so that
//! Postgres can stop it: linfa hands its problem to argmin and offers no
//! hook, so a fit ran to `max_iterations` whatever the cancel. The problem
//! here is linfa's (the same cost and gradient, parameters as a
//! (features + 1) × classes matrix starting at zero, the same argmin 0.11
//! L-BFGS with memory 10 and More-Thuente line search, the same termination)
//! and it is run by argmin directly. Its cost and gradient ask the interrupt
//! hook first: argmin evaluates them at least once per iteration, and an
//! error from them ends the run (from inside the line search, L-BFGS turns
//! it into a "solver exit", so the hook's error is kept aside and returned
//! from there). The arithmetic is linfa's, operation for operation, so a fit
//! gives linfa's weights bit for bit. Two things differ, neither in the
//! numbers: the one-hot target matrix is kept as each row's column index
//! (a product with 0 or 1 is exact), and the cost and gradient are computed
//! together and kept for the last point, because argmin asks for the cost,
//! the gradient and the gradient again at every point the line search
//! accepts; linfa computed the class scores three times there.

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, IterState};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use argmin_math::{
    ArgminAdd, ArgminDot, ArgminL1Norm, ArgminL2Norm, ArgminMinMax, ArgminMul, ArgminSignum,
    ArgminSub, ArgminZeroLike,
};
use ndarray::{s, Array2, Axis, Zip};
use serde::{Deserialize, Serialize};

use super::{AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{Interrupts, MlError, MlResult, Task};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "logistic_regression",
    description: "softmax regression with an L2 penalty, by L-BFGS (argmin)",
    tasks: &[TaskParams {
        task: Task::Classification,
        params: &[
            ParamSpec {
                name: "alpha",
                kind: ParamKind::Float {
                    min: 0.0,
                    max: 1e9,
                    nullable: false,
                },
                default: "1.0",
            },
            ParamSpec {
                name: "max_iterations",
                kind: ParamKind::Integer {
                    min: 1,
                    max: 100_000,
                    nullable: false,
                },
                default: "100",
            },
            ParamSpec {
                name: "gradient_tolerance",
                kind: ParamKind::Float {
                    min: 0.0,
                    max: 1.0,
                    nullable: false,
                },
                default: "0.0001",
            },
            ParamSpec {
                name: "fit_intercept",
                kind: ParamKind::Boolean,
                default: "true",
            },
        ],
    }],
    inputs: InputStyle::Scaled,
    fit,
    estimated_bytes,
};

/// Class scores `W·x + b`, turned into probabilities by softmax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxModel {
    /// `n_classes × n_features`, class after class.
    pub weights: Vec<f64>,
    pub intercepts: Vec<f64>,
}

impl SoftmaxModel {
    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        if n_classes < 2
            || self.intercepts.len() != n_classes
            || self.weights.len() != n_classes * n_features
        {
            return Err(MlError::corrupt(
                "logistic artifact: weights do not match the features and classes",
            ));
        }
        Ok(())
    }

    fn scores(&self, x: &[f64]) -> Vec<f64> {
        let f = x.len();
        self.intercepts
            .iter()
            .enumerate()
            .map(|(k, b)| {
                b + self.weights[k * f..(k + 1) * f]
                    .iter()
                    .zip(x)
                    .map(|(w, v)| w * v)
                    .sum::<f64>()
            })
            .collect()
    }
}

/// Softmax of scores; a class that can never be chosen scores -inf.
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// The logistic function: the probability a log-odds stands for.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Whether a decoded boosted ensemble's shape fits a model of `n_classes`
/// classes (0 for a regressor): as many starting scores as outputs (one,
/// or one per class above two), and whole iterations of one tree per
/// output.
pub fn boosted_shape_fits(model_classes: u32, init: usize, trees: usize, n_classes: usize) -> bool {
    let outputs = if n_classes > 2 { n_classes } else { 1 };
    model_classes as usize == n_classes
        && n_classes != 1
        && init == outputs
        && trees > 0
        && trees.is_multiple_of(outputs)
}

/// Class probabilities from a boosted ensemble's scores: one score is the
/// log-odds of the second of two classes, more are one per class.
pub fn boosted_proba(scores: &[f64]) -> Vec<f64> {
    if let [log_odds] = scores {
        let p = sigmoid(*log_odds);
        vec![1.0 - p, p]
    } else {
        softmax(scores)
    }
}

/// The first class of highest score.
pub fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (k, &v)| if v > values[best] { k } else { best })
}

impl Predictor for SoftmaxModel {
    fn predict(&self, x: &[f64]) -> f64 {
        argmax(&self.scores(x)) as f64
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        Some(softmax(&self.scores(x)))
    }
}

/// The records, the rows' class indices and their class columns, the class
/// scores (one matrix, turned into log-probabilities and then the
/// gradient's residuals in place), and L-BFGS's ten pairs of steps and
/// gradient changes with the parameter-sized temporaries around them.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    let classes = shape.classes.max(2) as u64;
    let params = (shape.features as u64 + 1) * classes;
    (rows * shape.features as u64 + 2 * rows + rows * classes + 40 * params) * 8
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let params = data.params;
    let (classes, n_classes) = data
        .class_indices()
        .ok_or_else(|| MlError::invalid("logistic_regression needs class labels"))?;
    data.interrupts.check()?;
    let failed = |why: &dyn std::fmt::Display| {
        MlError::insufficient(format!("logistic regression could not be fitted: {why}"))
    };
    let alpha = params.float("alpha").unwrap_or(1.0);
    let gradient_tolerance = params.float("gradient_tolerance").unwrap_or(1e-4);
    let fit_intercept = params.boolean("fit_intercept").unwrap_or(true);
    // linfa's parameter checks, with its words.
    if !alpha.is_finite() || alpha < 0.0 {
        return Err(failed(&"alpha must be a positive, finite number"));
    }
    if !gradient_tolerance.is_finite() || gradient_tolerance <= 0.0 {
        return Err(failed(
            &"gradient_tolerance must be a positive, finite number",
        ));
    }
    if data.rows.is_empty() {
        return Err(failed(&"there are no training rows"));
    }
    // linfa's columns are the classes the training rows have, in order; a
    // class only the test rows have can never be predicted.
    let mut column_of = vec![None; n_classes];
    for &class in classes.iter() {
        if let Some(column) = column_of.get_mut(class) {
            *column = Some(0);
        }
    }
    let mut present = Vec::new();
    for (class, column) in column_of.iter_mut().enumerate() {
        if column.is_some() {
            *column = Some(present.len());
            present.push(class);
        }
    }
    let target: Vec<usize> = classes
        .iter()
        .map(|&class| column_of.get(class).copied().flatten().unwrap_or(0))
        .collect();
    drop(classes);
    let x = records(data)?;
    let n_features = x.ncols();
    let initial = Weights(Array2::zeros((
        n_features + fit_intercept as usize,
        present.len(),
    )));
    let stopped = RefCell::new(None);
    let problem = Softmax {
        x: &x,
        target: &target,
        alpha,
        interrupts: data.interrupts,
        stopped: &stopped,
        last: RefCell::new(None),
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(gradient_tolerance)
        .map_err(|e| failed(&e))?;
    let max_iterations = params.integer("max_iterations").unwrap_or(100) as u64;
    let result = Executor::new(problem, solver)
        .configure(|state: IterState<Weights, Weights, (), (), (), f64>| {
            state.param(initial.clone()).max_iters(max_iterations)
        })
        .run();
    if let Some(e) = stopped.borrow_mut().take() {
        return Err(e);
    }
    let w = result
        .map_err(|e| failed(&e))?
        .state
        .best_param
        .unwrap_or(initial)
        .0;
    let mut model = SoftmaxModel {
        weights: vec![0.0; n_classes * n_features],
        intercepts: vec![f64::NEG_INFINITY; n_classes],
    };
    for (column, &class) in present.iter().enumerate() {
        model.intercepts[class] = if fit_intercept {
            w[[n_features, column]]
        } else {
            0.0
        };
        for f in 0..n_features {
            model.weights[class * n_features + f] = w[[f, column]];
        }
    }
    if model.weights.iter().any(|w| !w.is_finite()) {
        return Err(
            MlError::insufficient("logistic regression gave non-finite weights")
                .with_hint("scale the features, or raise alpha"),
        );
    }
    Ok(Estimator::Softmax(model))
}

/// Rows between two interrupt checks while the records are copied.
const CHECK_EVERY: usize = 4096;

/// The training rows as one row-major matrix, refused (with linfa's words)
/// if any value is not finite.
fn records(data: &TrainingData<'_>) -> MlResult<Array2<f64>> {
    let width = data.dataset.width();
    let mut values = Vec::with_capacity(data.rows.len() * width);
    for (k, &i) in data.rows.iter().enumerate() {
        if k % CHECK_EVERY == 0 {
            data.interrupts.check()?;
        }
        let row = data.dataset.row(i);
        if row.iter().any(|v| !v.is_finite()) {
            return Err(MlError::insufficient(
                "logistic regression could not be fitted: \
                 Values must be finite and not `Inf`, `-Inf` or `NaN`",
            ));
        }
        values.extend_from_slice(row);
    }
    Array2::from_shape_vec((data.rows.len(), width), values)
        .map_err(|e| MlError::invalid(format!("logistic regression: {e}")))
}

/// linfa-logistic's multinomial problem: weights `W` (features × columns)
/// with, when there is an intercept, one more row for `b`.
struct Softmax<'a> {
    x: &'a Array2<f64>,
    /// Each row's class column: linfa's one-hot target, as indices.
    target: &'a [usize],
    alpha: f64,
    interrupts: &'a Interrupts<'a>,
    /// The hook's error, kept where L-BFGS cannot swallow it.
    stopped: &'a RefCell<Option<MlError>>,
    /// The last point evaluated, its cost and its gradient.
    last: RefCell<Option<(Weights, f64, Weights)>>,
}

impl Softmax<'_> {
    /// The cost and gradient at `w`, asking the hook first.
    fn evaluate(&self, w: &Weights) -> Result<(f64, Weights), argmin::core::Error> {
        if self.stopped.borrow().is_some() {
            return Err(argmin::core::Error::msg("training was stopped"));
        }
        if let Err(e) = self.interrupts.check() {
            let message = e.message.clone();
            *self.stopped.borrow_mut() = Some(e);
            return Err(argmin::core::Error::msg(message));
        }
        if let Some((at, cost, gradient)) = self.last.borrow().as_ref() {
            if at == w {
                return Ok((*cost, gradient.clone()));
            }
        }
        let (cost, gradient) = self.cost_and_gradient(&w.0);
        *self.last.borrow_mut() = Some((w.clone(), cost, gradient.clone()));
        Ok((cost, gradient))
    }

    /// linfa-logistic 0.8.1's `multi_logistic_loss` and
    /// `multi_logistic_grad`, sharing their log-probabilities.
    fn cost_and_gradient(&self, w: &Array2<f64>) -> (f64, Weights) {
        let n_features = self.x.ncols();
        let params = w.slice(s![..n_features, ..]);
        let with_intercept = w.nrows() > n_features;
        // H = XW + b (linfa adds zeros without an intercept; so does this).
        let mut h = self.x.dot(&params);
        if with_intercept {
            h += &w.row(n_features);
        } else {
            h += 0.0;
        }
        // H − log Σ exp H, per row, as linfa's `log_sum_exp`: one maximum
        // over the whole matrix, the sum in class order, floored at 1e-15.
        if let Some(max) = h.iter().copied().reduce(f64::max) {
            for mut row in h.rows_mut() {
                let sum = row.iter().fold(0.0, |acc, v| acc + (v - max).exp());
                let log_sum = sum.max(1e-15).ln() + max;
                row.mapv_inplace(|v| v - log_sum);
            }
        }
        let one_hot = |i: usize, c: usize| if self.target[i] == c { 1.0 } else { 0.0 };
        // linfa's `elem_dot(&log_prob, y)`, in memory order.
        let mut fit = 0.0;
        for (i, row) in h.rows().into_iter().enumerate() {
            for (c, log_prob) in row.iter().enumerate() {
                fit += log_prob * one_hot(i, c);
            }
        }
        let cost = -fit + 0.5 * self.alpha * elem_dot(&params, &params);
        // softmax(H) − Y.
        h.mapv_inplace(f64::exp);
        for (i, mut row) in h.rows_mut().into_iter().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v -= one_hot(i, c);
            }
        }
        let mut gradient = Array2::zeros(w.raw_dim());
        let dw = self.x.t().dot(&h) + &(&params * self.alpha);
        gradient.slice_mut(s![..n_features, ..]).assign(&dw);
        if with_intercept {
            gradient.row_mut(n_features).assign(&h.sum_axis(Axis(0)));
        }
        (cost, Weights(gradient))
    }
}

impl CostFunction for Softmax<'_> {
    type Param = Weights;
    type Output = f64;

    fn cost(&self, w: &Weights) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(w)?.0)
    }
}

impl Gradient for Softmax<'_> {
    type Param = Weights;
    type Gradient = Weights;

    fn gradient(&self, w: &Weights) -> Result<Weights, argmin::core::Error> {
        Ok(self.evaluate(w)?.1)
    }
}

/// linfa-logistic's `elem_dot`: Σ a·b in memory order.
fn elem_dot<A, B>(
    a: &ndarray::ArrayBase<A, ndarray::Ix2>,
    b: &ndarray::ArrayBase<B, ndarray::Ix2>,
) -> f64
where
    A: ndarray::Data<Elem = f64>,
    B: ndarray::Data<Elem = f64>,
{
    Zip::from(a).and(b).fold(0.0, |acc, &a, &b| acc + a * b)
}

/// The parameters as argmin sees them: linfa-logistic's `ArgminParam`, whose
/// vector arithmetic argmin's L-BFGS is written against. The operations
/// L-BFGS uses (add, subtract, scale, dot, L2 norm) are linfa's; the others
/// (signum, min/max, L1 norm) serve only L-BFGS's L1 penalty, which is not
/// used.
#[derive(Debug, Clone, PartialEq)]
struct Weights(Array2<f64>);

impl ArgminSub<f64, Weights> for Weights {
    fn sub(&self, other: &f64) -> Weights {
        Weights(&self.0 - *other)
    }
}

impl ArgminSub<Weights, Weights> for Weights {
    fn sub(&self, other: &Weights) -> Weights {
        Weights(&self.0 - &other.0)
    }
}

impl ArgminAdd<f64, Weights> for Weights {
    fn add(&self, other: &f64) -> Weights {
        Weights(&self.0 + *other)
    }
}

impl ArgminAdd<Weights, Weights> for Weights {
    fn add(&self, other: &Weights) -> Weights {
        Weights(&self.0 + &other.0)
    }
}

impl ArgminDot<Weights, f64> for Weights {
    fn dot(&self, other: &Weights) -> f64 {
        elem_dot(&self.0, &other.0)
    }
}

impl ArgminL1Norm<f64> for Weights {
    fn l1_norm(&self) -> f64 {
        self.0.iter().map(|v| v.abs()).sum()
    }
}

impl ArgminL2Norm<f64> for Weights {
    fn l2_norm(&self) -> f64 {
        elem_dot(&self.0, &self.0).sqrt()
    }
}

impl ArgminMul<f64, Weights> for Weights {
    fn mul(&self, other: &f64) -> Weights {
        Weights(&self.0 * *other)
    }
}

impl ArgminMul<Weights, Weights> for Weights {
    fn mul(&self, other: &Weights) -> Weights {
        Weights(&self.0 * &other.0)
    }
}

/// A step scaled by a number (argmin's `scaled_add` is written as this).
impl ArgminMul<Weights, Weights> for f64 {
    fn mul(&self, other: &Weights) -> Weights {
        Weights(&other.0 * *self)
    }
}

impl ArgminSignum for Weights {
    fn signum(self) -> Weights {
        Weights(self.0.mapv_into(f64::signum))
    }
}

impl ArgminZeroLike for Weights {
    fn zero_like(&self) -> Weights {
        Weights(Array2::zeros(self.0.raw_dim()))
    }
}

impl ArgminMinMax for Weights {
    fn min(x: &Weights, y: &Weights) -> Weights {
        Weights(Zip::from(&x.0).and(&y.0).map_collect(|&a, &b| a.min(b)))
    }

    fn max(x: &Weights, y: &Weights) -> Weights {
        Weights(Zip::from(&x.0).and(&y.0).map_collect(|&a, &b| a.max(b)))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::ml::dataset::{Dataset, LabelKind, RawLabels};

    /// Three classes along two columns; `overlap` 0 makes them separable.
    fn three_classes(overlap: f64) -> Dataset {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..150 {
            let c = i % 3;
            let jitter = ((i * 37) % 17) as f64 / 17.0 - 0.5;
            records.extend([
                c as f64 + jitter * (0.5 + overlap),
                ((i * 7) % 5) as f64 / 5.0 + overlap * jitter * c as f64,
            ]);
            labels.push(["a", "b", "c"][c].to_string());
        }
        Dataset::new(
            vec!["x".into(), "y".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap()
    }

    fn fit_with(
        d: &Dataset,
        params: serde_json::Value,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<SoftmaxModel> {
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        fit_rows(d, &rows, params, interrupts)
    }

    fn fit_rows(
        d: &Dataset,
        rows: &[usize],
        params: serde_json::Value,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<SoftmaxModel> {
        let params = Hyperparams::validate(
            SPEC.name,
            SPEC.params(Task::Classification).unwrap(),
            &params,
        )
        .unwrap();
        let Estimator::Softmax(m) = fit(&TrainingData {
            dataset: d,
            rows,
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

    /// Separable classes without a penalty: the weights grow for as long as
    /// L-BFGS is let run.
    fn endless() -> serde_json::Value {
        serde_json::json!({"alpha": 0.0, "gradient_tolerance": 1e-300, "max_iterations": 100_000})
    }

    #[test]
    fn an_interrupt_stops_the_fit() {
        let calls = Cell::new(0);
        let stop_after_twenty = || {
            calls.set(calls.get() + 1);
            if calls.get() > 20 {
                Err(MlError::invalid("canceled"))
            } else {
                Ok(())
            }
        };
        let err = fit_with(
            &three_classes(0.0),
            endless(),
            &Interrupts::new(&stop_after_twenty),
        )
        .unwrap_err();
        assert_eq!(err.message, "canceled");
        assert_eq!(calls.get(), 21);
    }

    #[test]
    fn the_hook_is_asked_at_every_iteration() {
        // All run to the end: this fit is still moving at 20 iterations.
        for max_iterations in [5, 10, 20] {
            let calls = Cell::new(0);
            let count = || {
                calls.set(calls.get() + 1);
                Ok(())
            };
            let mut params = endless();
            params["max_iterations"] = max_iterations.into();
            fit_with(&three_classes(0.0), params, &Interrupts::new(&count)).unwrap();
            assert!(
                calls.get() >= max_iterations,
                "{max_iterations} iterations, {} checks",
                calls.get()
            );
        }
    }

    #[test]
    fn a_zero_gradient_tolerance_is_refused_as_linfa_refused_it() {
        let err = fit_with(
            &three_classes(1.0),
            serde_json::json!({"gradient_tolerance": 0.0}),
            &Interrupts::none(),
        )
        .unwrap_err();
        assert!(
            err.message.contains("gradient_tolerance"),
            "{}",
            err.message
        );
    }

    /// What linfa-logistic 0.8.1 gave (printed with `{:?}`). The port does
    /// its arithmetic in its order; the margin is only for `exp` and `ln`,
    /// which come from the platform's maths library.
    #[test]
    fn the_port_gives_linfas_weights() {
        let d = three_classes(1.0);
        let all: Vec<usize> = (0..d.n_rows()).collect();
        // Rows are sorted when the dataset is built, so pick by label.
        let a_and_c: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| d.label_value(i) != 1.0)
            .collect();
        type Fit<'a> = (&'a [usize], serde_json::Value, [f64; 6], [f64; 3]);
        let linfa: [Fit; 4] = [
            (
                &all,
                serde_json::json!({}),
                [
                    -3.469517540187297,
                    1.4166246172244539,
                    -0.24694215834472652,
                    0.3652906734565398,
                    3.7164596985320224,
                    -1.7819152906809947,
                ],
                [2.491203706895178, 1.2973877399110936, -3.788591446806261],
            ),
            (
                &all,
                serde_json::json!({"alpha": 0.05, "fit_intercept": false}),
                [
                    -3.065550767969549,
                    3.7604766077900957,
                    1.0660099280919408,
                    -0.9983922896060752,
                    1.999540839877599,
                    -2.7620843181840216,
                ],
                [0.0, 0.0, 0.0],
            ),
            (
                &all,
                serde_json::json!({"alpha": 0.01, "max_iterations": 7}),
                [
                    -6.259545713499586,
                    3.318029415893295,
                    -0.08675141635095002,
                    0.2621812562001142,
                    6.346297129850537,
                    -3.580210672093413,
                ],
                [4.045958104525913, 1.9729741086168548, -6.018932213142765],
            ),
            (
                &a_and_c,
                serde_json::json!({}),
                [
                    -2.0749826045910384,
                    0.6344317009229172,
                    0.0,
                    0.0,
                    2.0749826045910393,
                    -0.6344317009229168,
                ],
                [1.9298266327606495, f64::NEG_INFINITY, -1.929826632760647],
            ),
        ];
        for (rows, params, weights, intercepts) in linfa {
            let m = fit_rows(&d, rows, params.clone(), &Interrupts::none()).unwrap();
            let close = |a: f64, b: f64| a == b || (a - b).abs() < 1e-12;
            for (ours, linfa) in m.weights.iter().zip(weights) {
                assert!(close(*ours, linfa), "{params}: {m:?}");
            }
            for (ours, linfa) in m.intercepts.iter().zip(intercepts) {
                assert!(close(*ours, linfa), "{params}: {m:?}");
            }
        }
    }
}
