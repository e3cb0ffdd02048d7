//! Pure-Rust machine learning: datasets, splits, algorithms, metrics, column
//! statistics and the artifact codec. No pgrx here, so plain `#[test]`s cover
//! it and `bench/floor.rs` compiles it on its own.

pub mod algorithms;
pub mod artifact;
pub mod dataset;
pub mod diagnostics;
pub mod drift;
pub mod error;
pub mod explain;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod hyperparams;
pub mod live;
pub mod metrics;
pub mod model;
pub mod parallel;
pub mod preprocess;
pub mod search;
pub mod split;
pub mod stats;

pub use error::{MlError, MlErrorKind, MlResult};

/// How long work is stopped from outside: the hook is called between units
/// of work (a node, a feature, a batch of rows), and an error it returns
/// ends the work with that error. The extension passes Postgres's interrupt
/// check, so a cancel or `statement_timeout` stops training promptly.
pub struct Interrupts<'a>(&'a dyn Fn() -> MlResult<()>);

impl<'a> Interrupts<'a> {
    pub fn new(check: &'a dyn Fn() -> MlResult<()>) -> Self {
        Interrupts(check)
    }

    /// Work that cannot be stopped from outside (tests, benchmarks).
    pub fn none() -> Interrupts<'static> {
        Interrupts(&|| Ok(()))
    }

    pub fn check(&self) -> MlResult<()> {
        (self.0)()
    }
}

/// Bytes a fit may still take for what grows as it goes (tree nodes),
/// after the parts known from the data's shape were checked up front. Every
/// allocation it covers is taken from it first, from any thread; one that
/// does not fit stops the fit with an error, so memory stays bounded without
/// refusing every fit whose worst case (a leaf per row) would not fit.
pub struct MemoryBudget(std::sync::atomic::AtomicI64);

impl MemoryBudget {
    pub fn new(bytes: u64) -> Self {
        MemoryBudget(std::sync::atomic::AtomicI64::new(
            bytes.min(i64::MAX as u64) as i64,
        ))
    }

    /// For tests and benchmarks.
    pub fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    pub fn take(&self, bytes: u64) -> MlResult<()> {
        let bytes = bytes.min(i64::MAX as u64) as i64;
        let before = self
            .0
            .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        if before < bytes {
            return Err(MlError::out_of_memory(
                "the model outgrew ambient.max_training_memory while it was fitted",
            )
            .with_hint("limit it (max_depth, min_samples_leaf, n_estimators), train on fewer rows, or ask a superuser to raise the setting"));
        }
        Ok(())
    }
}

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
