//! A trained model as predict sees it: the fitted estimator plus everything
//! needed to feed it (feature names) and to read its output (classes).

use serde::{Deserialize, Serialize};

use super::algorithms::{AlgorithmSpec, Estimator, TrainingData};
use super::dataset::{Dataset, LabelEncoding, Labels};
use super::hyperparams::Hyperparams;
use super::metrics::{self, Metrics};
use super::split::{self, Split};
use super::{Interrupts, MlError, MlResult, Task};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The algorithm's name, as `ambient.algorithms` lists it.
    pub algorithm: String,
    pub task: Task,
    pub feature_names: Vec<String>,
    /// Classes, for classifiers.
    pub labels: Option<LabelEncoding>,
    pub estimator: Estimator,
    /// `LabelEncoding::numeric_value` of each class, worked out once.
    #[serde(skip)]
    class_values: Vec<f64>,
}

/// What `train` hands back: the model, the split it was scored on, its scores.
pub struct Trained {
    pub model: Model,
    pub split: Split,
    pub metrics: Metrics,
}

/// What to fit and how to split for it.
pub struct FitRequest<'a> {
    pub algorithm: &'static AlgorithmSpec,
    /// Validated against `algorithm.params(task)`.
    pub params: &'a Hyperparams,
    pub test_size: f64,
    pub seed: u64,
    pub threads: usize,
    /// The columns whose values decide a row's side of the split.
    pub split_key: &'a [String],
}

pub fn train(
    data: &Dataset,
    fit: &FitRequest<'_>,
    interrupts: &Interrupts<'_>,
) -> MlResult<Trained> {
    let algorithm = fit.algorithm;
    algorithm.params(data.task())?;
    if let Some(encoding) = data.encoding() {
        if encoding.classes.len() < 2 {
            return Err(MlError::insufficient(format!(
                "the labels have only one class ({})",
                encoding.classes.join(", ")
            ))
            .with_hint("a classifier needs at least two classes"));
        }
    }
    let split = split::holdout(data, fit.test_size, fit.seed, fit.split_key)?;
    let estimator = (algorithm.fit)(&TrainingData {
        dataset: data,
        rows: &split.train,
        params: fit.params,
        seed: fit.seed,
        threads: fit.threads,
        interrupts,
    })?;
    interrupts.check()?;
    let model = Model::new(
        algorithm.name,
        data.task(),
        data.feature_names.clone(),
        data.encoding().cloned(),
        estimator,
    );
    let metrics = model.evaluate(data, &split.test)?;
    Ok(Trained {
        model,
        split,
        metrics,
    })
}

impl Model {
    pub fn new(
        algorithm: &str,
        task: Task,
        feature_names: Vec<String>,
        labels: Option<LabelEncoding>,
        estimator: Estimator,
    ) -> Self {
        Model {
            algorithm: algorithm.to_string(),
            task,
            feature_names,
            labels,
            estimator,
            class_values: Vec::new(),
        }
        .prepared()
    }

    /// Fills the fields serde skips; call after decoding.
    pub fn prepared(mut self) -> Self {
        self.class_values = match &self.labels {
            Some(enc) => (0..enc.classes.len())
                .map(|i| enc.numeric_value(i))
                .collect(),
            None => Vec::new(),
        };
        self
    }

    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn check_features(&self, x: &[f64]) -> MlResult<()> {
        if x.len() != self.n_features() {
            return Err(MlError::invalid(format!(
                "the model takes {} features, got {}",
                self.n_features(),
                x.len()
            ))
            .with_hint(format!(
                "features, in order: {}",
                self.feature_names.join(", ")
            )));
        }
        if let Some(j) = x.iter().position(|v| !v.is_finite()) {
            return Err(MlError::invalid(format!(
                "feature {} (\"{}\") is {}",
                j + 1,
                self.feature_names[j],
                x[j]
            )));
        }
        Ok(())
    }

    /// A class index for classifiers.
    pub fn predict_class(&self, x: &[f64]) -> Option<usize> {
        self.labels
            .as_ref()
            .map(|_| self.estimator.predictor().predict(x) as usize)
    }

    /// The label as a number (see `LabelEncoding::numeric_value`), or the
    /// regression estimate.
    pub fn predict_value(&self, x: &[f64]) -> f64 {
        match self.predict_class(x) {
            Some(class) => self.class_values[class],
            None => self.estimator.predictor().predict(x),
        }
    }

    pub fn predict_label(&self, x: &[f64]) -> String {
        match (&self.labels, self.predict_class(x)) {
            (Some(enc), Some(class)) => enc.classes[class].clone(),
            _ => self.estimator.predictor().predict(x).to_string(),
        }
    }

    pub fn predict_proba(&self, x: &[f64]) -> MlResult<Vec<f64>> {
        self.estimator.predictor().predict_proba(x).ok_or_else(|| {
            MlError::invalid("predict_proba needs a classification model")
                .with_hint("use predict() for regression")
        })
    }

    /// Scores this model on `rows` of `data`, matching features and classes
    /// by name, so a champion can be scored on a challenger's test rows.
    pub fn evaluate(&self, data: &Dataset, rows: &[usize]) -> MlResult<Metrics> {
        let columns = self
            .feature_names
            .iter()
            .map(|name| {
                data.feature_names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| MlError::invalid(format!("the data has no feature \"{name}\"")))
            })
            .collect::<MlResult<Vec<usize>>>()?;
        let inputs: Vec<Vec<f64>> = rows
            .iter()
            .map(|&i| {
                let row = data.row(i);
                columns.iter().map(|&c| row[c]).collect()
            })
            .collect();
        match (&data.labels, &self.labels) {
            (Labels::Classes { encoding, index }, Some(own)) => {
                let n_classes = encoding.classes.len();
                // Our class k is the data's class to_data[k]; unknown ones are n_classes.
                let to_data: Vec<usize> = own
                    .classes
                    .iter()
                    .map(|c| encoding.index_of(c).unwrap_or(n_classes))
                    .collect();
                let truth: Vec<usize> = rows.iter().map(|&i| index[i]).collect();
                let predicted: Vec<usize> = inputs
                    .iter()
                    .map(|x| to_data[self.estimator.predictor().predict(x) as usize])
                    .collect();
                let same_classes = own.classes == encoding.classes;
                let proba: Option<Vec<Vec<f64>>> = same_classes.then(|| {
                    inputs
                        .iter()
                        .filter_map(|x| self.estimator.predictor().predict_proba(x))
                        .collect()
                });
                Ok(metrics::classification(
                    &truth,
                    &predicted,
                    n_classes,
                    proba.as_deref(),
                ))
            }
            (Labels::Values(values), None) => {
                let truth: Vec<f64> = rows.iter().map(|&i| values[i]).collect();
                let predicted: Vec<f64> = inputs.iter().map(|x| self.predict_value(x)).collect();
                Ok(metrics::regression(&truth, &predicted))
            }
            _ => Err(MlError::invalid(
                "the model and the data are for different tasks",
            )),
        }
    }
}
