//! `ridge`, `lasso` and `elastic_net`: penalised least squares by
//! coordinate descent, through linfa-elasticnet. All three minimise
//! scikit-learn's elastic-net objective,
//! `1/(2n)·‖y − Xw − b‖² + alpha·l1_ratio·‖w‖₁ + alpha·(1 − l1_ratio)/2·‖w‖²`;
//! lasso is `l1_ratio = 1`. Ridge is `l1_ratio = 0` with scikit-learn's
//! `Ridge` objective, `‖y − Xw − b‖² + alpha·‖w‖²`, which has no 1/n: its
//! alpha is divided by the training rows before it reaches the solver, so it
//! means what it means in scikit-learn.

use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;

use super::{AlgorithmSpec, Estimator, LinearModel, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

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
    description: "least squares with an L2 penalty (linfa-elasticnet, l1_ratio 0)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ALPHA, MAX_ITERATIONS, TOLERANCE, FIT_INTERCEPT],
    }],
    scales_inputs: true,
    fit: |data| fit(data, Some(0.0)),
    estimated_bytes,
};

pub const LASSO: AlgorithmSpec = AlgorithmSpec {
    name: "lasso",
    description: "least squares with an L1 penalty (linfa-elasticnet, l1_ratio 1)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ALPHA, MAX_ITERATIONS, TOLERANCE, FIT_INTERCEPT],
    }],
    scales_inputs: true,
    fit: |data| fit(data, Some(1.0)),
    estimated_bytes,
};

pub const ELASTIC_NET: AlgorithmSpec = AlgorithmSpec {
    name: "elastic_net",
    description: "least squares with L1 and L2 penalties (linfa-elasticnet)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ALPHA, L1_RATIO, MAX_ITERATIONS, TOLERANCE, FIT_INTERCEPT],
    }],
    scales_inputs: true,
    fit: |data| fit(data, None),
    estimated_bytes,
};

/// The records matrix, the targets, and linfa's centred copy of the
/// targets and its residuals.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let cells = shape.rows as u64 * shape.features as u64;
    3 * cells * 8 + shape.rows as u64 * 16
}

/// `l1_ratio`: fixed by the algorithm, or the hyper-parameter's.
fn fit(data: &TrainingData<'_>, l1_ratio: Option<f64>) -> MlResult<Estimator> {
    let params = data.params;
    let fit_intercept = params.boolean("fit_intercept").unwrap_or(true);
    data.interrupts.check()?;
    // linfa-elasticnet 0.8.1 takes the intercept as the mean of y without
    // centring the features, which is only right for centred features: so
    // they are centred here, as scikit-learn does, and the intercept moved
    // back after.
    let mut records = data.records();
    let means = match records.mean_axis(ndarray::Axis(0)) {
        Some(means) if fit_intercept => means,
        _ => ndarray::Array1::zeros(records.ncols()),
    };
    records -= &means;
    let dataset = linfa::Dataset::new(records, data.targets());
    let alpha = params.float("alpha").unwrap_or(1.0);
    let penalty = match l1_ratio {
        Some(0.0) => alpha / data.rows.len().max(1) as f64,
        _ => alpha,
    };
    let fitted = ElasticNet::params()
        .penalty(penalty)
        .l1_ratio(l1_ratio.or(params.float("l1_ratio")).unwrap_or(0.5))
        .max_iterations(params.integer("max_iterations").unwrap_or(1000) as u32)
        .tolerance(params.float("tolerance").unwrap_or(1e-4))
        .with_intercept(fit_intercept)
        .fit(&dataset)
        .map_err(|e| MlError::insufficient(format!("the elastic net could not be fitted: {e}")))?;
    let model = LinearModel {
        intercept: fitted.intercept() - fitted.hyperplane().dot(&means),
        coefficients: fitted.hyperplane().to_vec(),
    };
    model.check_finite()?;
    Ok(Estimator::Linear(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::algorithms::Predictor;
    use crate::ml::dataset::{Dataset, RawLabels};

    fn fit_spec(spec: &AlgorithmSpec, alpha: f64) -> LinearModel {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let (a, b, noise) = (
                (i % 20) as f64,
                ((i * 7) % 11) as f64,
                ((i * 13) % 17) as f64,
            );
            records.extend([a, b, noise]);
            y.push(3.0 + 2.0 * a - 0.5 * b);
        }
        let d = Dataset::new(
            vec!["a".into(), "b".into(), "noise".into()],
            records,
            RawLabels::Values(y),
        )
        .unwrap();
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params = Hyperparams::validate(
            spec.name,
            spec.params(Task::Regression).unwrap(),
            &serde_json::json!({"alpha": alpha}),
        )
        .unwrap();
        let Estimator::Linear(m) = (spec.fit)(&TrainingData {
            dataset: &d,
            rows: &rows,
            params: &params,
            seed: 0,
            threads: 1,
            memory: &crate::ml::MemoryBudget::unlimited(),
            interrupts: &crate::ml::Interrupts::none(),
        })
        .unwrap() else {
            panic!("wrong estimator")
        };
        m
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
}
