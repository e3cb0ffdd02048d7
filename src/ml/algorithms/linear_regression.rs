//! Ordinary least squares through linfa-linear.

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use serde::{Deserialize, Serialize};

use super::{AlgorithmSpec, Estimator, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{MlError, MlResult, Task};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "linear_regression",
    description: "ordinary least squares (linfa-linear)",
    tasks: &[TaskParams {
        task: Task::Regression,
        params: &[ParamSpec {
            name: "fit_intercept",
            kind: ParamKind::Boolean,
            default: "true",
        }],
    }],
    scales_inputs: true,
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

/// linfa-linear copies the rows into a matrix with an intercept column and
/// solves the normal equations: about three copies of the data.
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let width = shape.features as u64 + 1;
    3 * shape.rows as u64 * width * 8 + 4 * width * width * 8
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    let params = data.params;
    data.interrupts.check()?;
    let dataset = linfa::Dataset::new(data.records(), data.targets());
    let fitted = LinearRegression::new()
        .with_intercept(params.boolean("fit_intercept").unwrap_or(true))
        .fit(&dataset)
        .map_err(|e| {
            MlError::insufficient(format!("linear regression could not be fitted: {e}"))
                .with_hint("check for constant or duplicated feature columns")
        })?;
    let model = LinearModel {
        intercept: fitted.intercept(),
        coefficients: fitted.params().to_vec(),
    };
    model.check_finite()?;
    Ok(Estimator::Linear(model))
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
    use super::*;
    use crate::ml::dataset::{Dataset, RawLabels};

    #[test]
    fn recovers_a_plane() {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..50 {
            let (a, b) = (i as f64, ((i * 7) % 11) as f64);
            records.extend([a, b]);
            y.push(3.0 + 2.0 * a - 0.5 * b);
        }
        let d = Dataset::new(vec!["a".into(), "b".into()], records, RawLabels::Values(y)).unwrap();
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let params = Hyperparams::validate(
            "linear_regression",
            SPEC.params(Task::Regression).unwrap(),
            &serde_json::json!({}),
        )
        .unwrap();
        let Estimator::Linear(m) = fit(&TrainingData {
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
        assert!((m.intercept - 3.0).abs() < 1e-8);
        assert!((m.coefficients[0] - 2.0).abs() < 1e-8);
        assert!((m.predict(&[1.0, 2.0]) - 4.0).abs() < 1e-8);
    }
}
