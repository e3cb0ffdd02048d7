//! Pure-Rust machine learning: datasets, splits, algorithms, metrics, column
//! statistics and the artifact codec. No pgrx here, so plain `#[test]`s cover
//! it and `bench/floor.rs` compiles it on its own.

pub mod algorithms;
pub mod artifact;
pub mod dataset;
pub mod error;
pub mod hyperparams;
pub mod metrics;
pub mod model;
pub mod split;
pub mod stats;

pub use error::{MlError, MlErrorKind, MlResult};

/// What a project predicts. Fixed on a project's first train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }

    pub fn parse(text: &str) -> MlResult<Task> {
        match text {
            "classification" => Ok(Task::Classification),
            "regression" => Ok(Task::Regression),
            other => Err(MlError::invalid(format!("unknown task \"{other}\""))
                .with_hint("task is 'classification' or 'regression'")),
        }
    }

    /// The metric that decides which of two models is better (higher wins).
    pub fn primary_metric(self) -> &'static str {
        match self {
            Task::Classification => "f1",
            Task::Regression => "r2",
        }
    }
}
