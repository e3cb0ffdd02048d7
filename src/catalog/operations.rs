//! What ambient operations record: drift runs, policies and their runs,
//! alerts, approvals and schedules. Every function here is called inside
//! `as_extension_owner`, after the caller's rights were checked.

use pgrx::prelude::*;
use pgrx::JsonB;

use super::select_one;
use crate::error::AmbientResult;

/// The statistics of the snapshot a model was trained on.
pub fn snapshot_stats(model_id: i64) -> AmbientResult<Option<serde_json::Value>> {
    Ok(select_one::<JsonB>(
        "SELECT s.column_stats FROM ambient.model_store m
           JOIN ambient.snapshots s ON s.id OPERATOR(pg_catalog.=) m.snapshot_id
          WHERE m.id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
    )?
    .map(|j| j.0))
}

pub struct NewDriftRun<'a> {
    pub project_id: i64,
    pub model_id: i64,
    pub run_by: &'a str,
    pub source: &'a str,
    pub rows: i64,
    pub drifted_share: f64,
    pub dataset_drifted: bool,
    pub columns: serde_json::Value,
}

pub fn insert_drift_run(run: NewDriftRun<'_>) -> AmbientResult<i64> {
    Ok(Spi::get_one_with_args::<i64>(
        "INSERT INTO ambient.drift_log
           (project_id, model_id, run_by, source, rows, drifted_share, dataset_drifted, columns)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        &[
            run.project_id.into(),
            run.model_id.into(),
            run.run_by.into(),
            run.source.into(),
            run.rows.into(),
            run.drifted_share.into(),
            run.dataset_drifted.into(),
            JsonB(run.columns).into(),
        ],
    )?
    .unwrap_or_default())
}

/// The project's policy, as `set_policy` stored it.
pub fn policy_of(project_id: i64) -> AmbientResult<Option<serde_json::Value>> {
    Ok(select_one::<JsonB>(
        "SELECT policy FROM ambient.policies WHERE project_id OPERATOR(pg_catalog.=) $1",
        &[project_id.into()],
    )?
    .map(|j| j.0))
}
