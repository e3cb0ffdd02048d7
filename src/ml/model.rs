//! A trained model as predict sees it: its inputs and their preprocessing,
//! the fitted estimator, and its classes.

use serde::{Deserialize, Serialize};

use super::algorithms::{AlgorithmSpec, Estimator, TrainingData};
use super::dataset::{Dataset, LabelEncoding, Labels};
use super::diagnostics::{self, Diagnostics, TypicalRow};
use super::explain;
use super::hyperparams::Hyperparams;
use super::metrics::{self, Metrics};
use super::preprocess::{self, ColumnOptions, Preprocessor, Value};
#[cfg(test)]
use super::split;
use super::split::Split;
use super::{parallel, Interrupts, MemoryBudget, MlError, MlResult, Task};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The algorithm's name, as `ambient.algorithms` lists it.
    pub algorithm: String,
    pub task: Task,
    /// The raw input columns, in order, and what becomes of them.
    pub inputs: Preprocessor,
    /// The features the estimator sees, as preprocessing names them.
    pub feature_names: Vec<String>,
    /// Classes, for classifiers.
    pub labels: Option<LabelEncoding>,
    pub estimator: Estimator,
    /// `LabelEncoding::numeric_value` of each class, worked out once.
    #[serde(skip)]
    class_values: Vec<f64>,
}

/// Encoded rows to predict: row `at[k]` is `records[at[k] * width..]`.
pub(crate) struct EncodedRows<'a> {
    pub records: &'a [f64],
    pub width: usize,
    pub at: &'a [usize],
}

/// What `train` hands back: the model, its scores on the test split, and
/// the permutation importance of each input there.
pub struct Trained {
    pub model: Model,
    pub metrics: Metrics,
    pub permutation: Vec<f64>,
    pub diagnostics: Diagnostics,
}

/// What to fit, and on which rows.
pub struct FitRequest<'a> {
    pub algorithm: &'static AlgorithmSpec,
    /// Validated against `algorithm.params(task)`.
    pub params: &'a Hyperparams,
    /// Fitted on its training rows, scored on its test rows.
    pub split: &'a Split,
    pub seed: u64,
    pub threads: usize,
    /// Per input column, in order.
    pub preprocess: &'a [ColumnOptions],
    /// What the fit may take as it grows (see `MemoryBudget`).
    pub memory: &'a MemoryBudget,
}

/// Takes the rows, so that preprocessing can encode them where they lie
/// (`Preprocessor::transform_into`).
pub fn train(
    data: Dataset,
    fit: &FitRequest<'_>,
    interrupts: &Interrupts<'_>,
) -> MlResult<Trained> {
    let algorithm = fit.algorithm;
    algorithm.params(data.task())?;
    check_classes(&data)?;
    let split = fit.split;
    let typical = TypicalRow::of(&data, &split.train, interrupts)?;
    // Preprocessing learns from the training rows only.
    let inputs = Preprocessor::fit(&data, &split.train, fit.preprocess, interrupts)?;
    let encoded = inputs.transform_into(data, interrupts)?;
    check_not_all_constant(&encoded, &split.train)?;
    let estimator = (algorithm.fit)(&TrainingData {
        dataset: &encoded,
        rows: &split.train,
        params: fit.params,
        seed: fit.seed,
        threads: fit.threads,
        memory: fit.memory,
        interrupts,
    })?;
    interrupts.check()?;
    let model = Model::new(
        algorithm.name,
        encoded.task(),
        inputs,
        encoded.encoding().cloned(),
        estimator,
    );
    let test_rows = EncodedRows {
        records: &encoded.records,
        width: encoded.width(),
        at: &split.test,
    };
    let predicted = model.predict_rows(test_rows, &encoded, fit.threads, interrupts)?;
    let metrics = model.metrics_of(&encoded, &split.test, &predicted)?;
    let permutation = explain::permutation_importance(
        &model,
        &encoded,
        &split.test,
        fit.seed,
        fit.threads,
        interrupts,
    )?;
    let diagnostics = diagnostics::diagnose(&model, &encoded, &split.test, &predicted, &typical);
    Ok(Trained {
        model,
        metrics,
        permutation,
        diagnostics,
    })
}

/// Refuses a classifier's labels of one class, before any fit (a
/// search's too).
pub fn check_classes(data: &Dataset) -> MlResult<()> {
    match data.encoding() {
        Some(encoding) if encoding.classes.len() < 2 => Err(MlError::insufficient(format!(
            "the labels have only one class ({})",
            encoding.classes.join(", ")
        ))
        .with_hint("a classifier needs at least two classes")),
        _ => Ok(()),
    }
}

fn check_not_all_constant(encoded: &Dataset, rows: &[usize]) -> MlResult<()> {
    let Some(&first) = rows.first() else {
        return Ok(());
    };
    // Compared as bits: a column missing (NaN) in every row is constant.
    let varies = (0..encoded.width()).any(|j| {
        let v = encoded.row(first)[j].to_bits();
        rows.iter().any(|&i| encoded.row(i)[j].to_bits() != v)
    });
    if varies {
        Ok(())
    } else {
        Err(
            MlError::insufficient("every feature is constant in the training rows")
                .with_hint("a model needs a feature whose value varies"),
        )
    }
}

impl Model {
    pub fn new(
        algorithm: &str,
        task: Task,
        inputs: Preprocessor,
        labels: Option<LabelEncoding>,
        estimator: Estimator,
    ) -> Self {
        Model {
            algorithm: algorithm.to_string(),
            task,
            feature_names: inputs.feature_names(),
            inputs,
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
        self.inputs = self.inputs.prepared();
        self.estimator = self.estimator.prepared();
        self
    }

    /// The raw input columns, in the order the array forms take them.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.names().collect()
    }

    /// Preprocesses one row of raw inputs, in input order, into `out` (which
    /// is cleared first), ready for the `predict_*` methods.
    pub fn encode(&self, values: &[Value<'_>], out: &mut Vec<f64>) -> MlResult<()> {
        out.clear();
        self.inputs.encode(values, out)
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

    /// Scores this model on `rows` of raw `data`, matching input columns
    /// and classes by name, so a champion can be scored on a challenger's
    /// test rows.
    pub fn evaluate(
        &self,
        data: &Dataset,
        rows: &[usize],
        threads: usize,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Metrics> {
        let columns = self
            .inputs
            .names()
            .map(|name| {
                data.feature_names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| MlError::invalid(format!("the data has no feature \"{name}\"")))
            })
            .collect::<MlResult<Vec<usize>>>()?;
        let width = self.feature_names.len();
        let mut encoded = Vec::with_capacity(rows.len() * width);
        let mut row_values = Vec::with_capacity(data.width());
        let mut values = Vec::with_capacity(columns.len());
        let mut buffer = Vec::with_capacity(width);
        // Only `rows` are encoded; `score` reads them back in that order.
        for (k, &i) in rows.iter().enumerate() {
            if k % CHECK_EVERY == 0 {
                interrupts.check()?;
            }
            row_values.clear();
            row_values.extend(preprocess::raw_values(data, i));
            values.clear();
            values.extend(columns.iter().map(|&c| row_values[c]));
            self.encode(&values, &mut buffer)?;
            encoded.extend_from_slice(&buffer);
        }
        let positions: Vec<usize> = (0..rows.len()).collect();
        let x = EncodedRows {
            records: &encoded,
            width,
            at: &positions,
        };
        self.score_rows(x, data, rows, threads, interrupts)
    }

    /// Scores this model on `rows` of an encoded dataset.
    pub(crate) fn score(
        &self,
        encoded: &Dataset,
        rows: &[usize],
        threads: usize,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Metrics> {
        let x = EncodedRows {
            records: &encoded.records,
            width: encoded.width(),
            at: rows,
        };
        self.score_rows(x, encoded, rows, threads, interrupts)
    }

    /// Row `x.at[k]` of `x.records` is data row `rows[k]`.
    pub(crate) fn score_rows(
        &self,
        x: EncodedRows<'_>,
        data: &Dataset,
        rows: &[usize],
        threads: usize,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Metrics> {
        let predicted = self.predict_rows(x, data, threads, interrupts)?;
        self.metrics_of(data, rows, &predicted)
    }

    /// Predicts rows `x.at` of `x.records`. Predicting can take long (a
    /// forest, or knn's comparisons with every training row), so it runs on
    /// `threads` and asks `interrupts` as it goes. Probabilities come only
    /// when the model's classes are `data`'s.
    pub(crate) fn predict_rows(
        &self,
        x: EncodedRows<'_>,
        data: &Dataset,
        threads: usize,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Predicted> {
        let predictor = self.estimator.predictor();
        // Probabilities feed the binary metrics (AUC, log loss), which only
        // mean something when the model's classes are the data's.
        let same_classes = match (&data.labels, &self.labels) {
            (Labels::Classes { encoding, .. }, Some(own)) => own.classes == encoding.classes,
            _ => false,
        };
        // Blocks of rows on the threads, put back in order: the same
        // predictions whatever the threads.
        let EncodedRows { records, width, at } = x;
        let blocks = parallel::run(
            at.len().div_ceil(CHECK_EVERY),
            threads,
            interrupts,
            |b, hook| {
                hook.check()?;
                let block = &at[b * CHECK_EVERY..((b + 1) * CHECK_EVERY).min(at.len())];
                let mut predictions = Vec::with_capacity(block.len());
                let mut probabilities = Vec::new();
                for &k in block {
                    let x = &records[k * width..(k + 1) * width];
                    predictions.push(predictor.predict(x));
                    if same_classes {
                        probabilities.extend(predictor.predict_proba(x));
                    }
                }
                Ok((predictions, probabilities))
            },
        )?;
        let mut values = Vec::with_capacity(at.len());
        let mut probabilities = Vec::new();
        for (p, q) in blocks {
            values.extend(p);
            probabilities.extend(q);
        }
        Ok(Predicted {
            values,
            probabilities: same_classes.then_some(probabilities),
        })
    }

    /// The metrics of `predicted`, the predictions for `rows` of `data`.
    pub(crate) fn metrics_of(
        &self,
        data: &Dataset,
        rows: &[usize],
        predicted: &Predicted,
    ) -> MlResult<Metrics> {
        let Predicted {
            values: predictions,
            probabilities,
        } = predicted;
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
                let predicted: Vec<usize> =
                    predictions.iter().map(|&p| to_data[p as usize]).collect();
                Ok(metrics::classification(
                    &truth,
                    &predicted,
                    n_classes,
                    probabilities.as_deref(),
                ))
            }
            (Labels::Values(values), None) => {
                let truth: Vec<f64> = rows.iter().map(|&i| values[i]).collect();
                Ok(metrics::regression(&truth, predictions))
            }
            _ => Err(MlError::invalid(
                "the model and the data are for different tasks",
            )),
        }
    }
}

/// Predictions for some rows, in their order: a class index (classifiers)
/// or the estimate, and each row's class probabilities when the model's
/// classes are the data's.
pub(crate) struct Predicted {
    pub values: Vec<f64>,
    pub probabilities: Option<Vec<Vec<f64>>>,
}

/// The 25 % test split the unit tests share, keyed by every column.
#[cfg(test)]
pub(crate) fn test_split(data: &Dataset, seed: u64) -> Split {
    split::holdout(data, 0.25, seed, &data.feature_names).unwrap()
}

/// Trains `algorithm` on `data` with its default hyper-parameters and
/// preprocessing, `test_split`, no memory limit and no interrupts: the
/// setup the unit tests share.
#[cfg(test)]
pub(crate) fn train_with_defaults(
    data: &Dataset,
    algorithm: &str,
    seed: u64,
    threads: usize,
) -> Trained {
    let spec = super::algorithms::lookup(algorithm).unwrap();
    let params = Hyperparams::validate(
        spec.name,
        spec.params(data.task()).unwrap(),
        &serde_json::Value::Null,
    )
    .unwrap();
    let options = preprocess::default_options(data, spec.inputs);
    train(
        data.clone(),
        &FitRequest {
            algorithm: spec,
            params: &params,
            split: &test_split(data, seed),
            seed,
            threads,
            preprocess: &options,
            memory: &MemoryBudget::unlimited(),
        },
        &Interrupts::none(),
    )
    .unwrap_or_else(|e| panic!("{algorithm}: {e}"))
}

/// Rows between two interrupt checks while scoring.
const CHECK_EVERY: usize = 256;
