//! What ambient operations record: drift runs, policies and their runs,
//! alerts, approvals and schedules. Every function here is called inside
//! `as_extension_owner`, after the caller's rights were checked.

use pgrx::prelude::*;
use pgrx::JsonB;

use super::{prune_log, select_one, Log};
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
    let project_id = run.project_id;
    let id = Spi::get_one_with_args::<i64>(
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
    .unwrap_or_default();
    prune_log(Log::Drift, project_id)?;
    Ok(id)
}

/// The project's policy, as `set_policy` stored it.
pub fn policy_of(project_id: i64) -> AmbientResult<Option<serde_json::Value>> {
    Ok(select_one::<JsonB>(
        "SELECT policy FROM ambient.policies WHERE project_id OPERATOR(pg_catalog.=) $1",
        &[project_id.into()],
    )?
    .map(|j| j.0))
}

/// Stores the project's policy, replacing any before it.
pub fn store_policy(project_id: i64, policy: serde_json::Value, set_by: &str) -> AmbientResult<()> {
    Spi::run_with_args(
        "INSERT INTO ambient.policies (project_id, policy, set_by) VALUES ($1, $2, $3)
         ON CONFLICT (project_id) DO UPDATE
            SET policy = excluded.policy, set_at = pg_catalog.now(), set_by = excluded.set_by",
        &[project_id.into(), JsonB(policy).into(), set_by.into()],
    )?;
    Ok(())
}

pub struct NewPolicyRun<'a> {
    pub project_id: i64,
    pub started_at: pgrx::datum::TimestampWithTimeZone,
    pub run_by: &'a str,
    pub status: &'a str,
    pub action: Option<&'a str>,
    pub reason: &'a str,
    pub model_id: Option<i64>,
    pub details: serde_json::Value,
}

pub fn insert_policy_run(run: NewPolicyRun<'_>) -> AmbientResult<i64> {
    let project_id = run.project_id;
    let id = Spi::get_one_with_args::<i64>(
        "INSERT INTO ambient.policy_log
           (project_id, started_at, run_by, status, action, reason, model_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        &[
            run.project_id.into(),
            run.started_at.into(),
            run.run_by.into(),
            run.status.into(),
            run.action.into(),
            run.reason.into(),
            run.model_id.into(),
            JsonB(run.details).into(),
        ],
    )?
    .unwrap_or_default();
    prune_log(Log::Policy, project_id)?;
    Ok(id)
}

/// Records an alert and queues `NOTIFY ambient_alerts` with it as JSON,
/// which Postgres sends when the transaction commits (and never if it
/// rolls back).
pub fn raise_alert(
    project_id: i64,
    project: &str,
    kind: &str,
    message: &str,
    details: serde_json::Value,
) -> AmbientResult<i64> {
    let id = Spi::get_one_with_args::<i64>(
        "INSERT INTO ambient.alert_log (project_id, kind, message, details)
         VALUES ($1, $2, $3, $4) RETURNING id",
        &[
            project_id.into(),
            kind.into(),
            message.into(),
            JsonB(details.clone()).into(),
        ],
    )?
    .unwrap_or_default();
    prune_log(Log::Alert, project_id)?;
    let payload = serde_json::json!({
        "alert_id": id, "project": project, "kind": kind, "message": message, "details": details,
    });
    Spi::run_with_args(
        "SELECT pg_catalog.pg_notify('ambient_alerts', $1)",
        &[payload.to_string().into()],
    )?;
    Ok(id)
}

pub fn await_approval(model_id: i64, project_id: i64) -> AmbientResult<()> {
    Spi::run_with_args(
        "INSERT INTO ambient.approval_log (model_id, project_id, state) VALUES ($1, $2, 'awaiting')",
        &[model_id.into(), project_id.into()],
    )?;
    Ok(())
}

/// A model's approval state and its project, if it ever awaited one.
pub fn approval_of(model_id: i64) -> AmbientResult<Option<(String, i64)>> {
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT state, project_id FROM ambient.approval_log
                  WHERE model_id OPERATOR(pg_catalog.=) $1",
                None,
                &[model_id.into()],
            )?
            .first();
        if row.is_empty() {
            return Ok(None);
        }
        Ok(row.get::<String>(1)?.zip(row.get::<i64>(2)?))
    })
}

pub fn decide_approval(
    model_id: i64,
    state: &str,
    by: &str,
    reason: Option<&str>,
) -> AmbientResult<()> {
    Spi::run_with_args(
        "UPDATE ambient.approval_log
            SET state = $2, decided_at = pg_catalog.now(), decided_by = $3, reason = $4
          WHERE model_id OPERATOR(pg_catalog.=) $1",
        &[model_id.into(), state.into(), by.into(), reason.into()],
    )?;
    Ok(())
}

/// The pg_cron job running the project's policy, if any.
pub fn schedule_of(project_id: i64) -> AmbientResult<Option<i64>> {
    select_one::<i64>(
        "SELECT job_id FROM ambient.schedule_list WHERE project_id OPERATOR(pg_catalog.=) $1",
        &[project_id.into()],
    )
}

pub fn store_schedule(project_id: i64, job_id: i64, cron: &str, by: &str) -> AmbientResult<()> {
    Spi::run_with_args(
        "INSERT INTO ambient.schedule_list (project_id, job_id, cron, scheduled_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (project_id) DO UPDATE
            SET job_id = excluded.job_id, cron = excluded.cron,
                scheduled_at = pg_catalog.now(), scheduled_by = excluded.scheduled_by",
        &[project_id.into(), job_id.into(), cron.into(), by.into()],
    )?;
    Ok(())
}

/// A pg_cron job as pg_cron has it (schedule, the role it runs as, and
/// whether it is active), read as the extension owner (pg_cron shows
/// other roles' jobs to a superuser only); `None` if it is gone. Call only
/// where pg_cron is installed.
pub fn cron_job(job_id: i64) -> AmbientResult<Option<(String, String, bool)>> {
    super::as_owner(|| {
        Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT schedule, username::pg_catalog.text, active FROM cron.job
                      WHERE jobid OPERATOR(pg_catalog.=) $1",
                    Some(1),
                    &[job_id.into()],
                )?
                .first();
            if row.is_empty() {
                return Ok(None);
            }
            Ok(Some((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<bool>(3)?.unwrap_or_default(),
            )))
        })
    })
}

pub fn delete_schedule(project_id: i64) -> AmbientResult<()> {
    Spi::run_with_args(
        "DELETE FROM ambient.schedule_list WHERE project_id OPERATOR(pg_catalog.=) $1",
        &[project_id.into()],
    )?;
    Ok(())
}

/// A canary or shadow trial that is running.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    pub model_id: i64,
    pub shadow: bool,
    /// The share of keys a canary serves.
    pub traffic: f64,
}

const RUNNING_CHALLENGE: &str = "SELECT model_id, mode, traffic, event FROM ambient.challenge_log
      WHERE project_id OPERATOR(pg_catalog.=) $1 ORDER BY id DESC LIMIT 1";

/// The project's running trial, if any, read-only under the statement's
/// snapshot (the attached tables' trigger reads it once per statement).
pub fn running_challenge(project_id: i64) -> AmbientResult<Option<Challenge>> {
    super::select_kept(RUNNING_CHALLENGE, &[project_id.into()], |rows| {
        if rows.is_empty() || rows.get::<String>(0, 4)?.as_deref() != Some("started") {
            return Ok(None);
        }
        Ok(Some(Challenge {
            model_id: rows.get::<i64>(0, 1)?.unwrap_or_default(),
            shadow: rows.get::<String>(0, 2)?.as_deref() == Some("shadow"),
            traffic: rows.get::<f64>(0, 3)?.unwrap_or(0.0),
        }))
    })
}

/// The same, as the latest committed rows show it: for a writer holding
/// the project lock.
pub fn latest_challenge(project_id: i64) -> AmbientResult<Option<Challenge>> {
    super::as_owner(|| {
        Spi::connect(|client| {
            let row = client
                .select(RUNNING_CHALLENGE, Some(1), &[project_id.into()])?
                .first();
            if row.is_empty() || row.get::<String>(4)?.as_deref() != Some("started") {
                return Ok(None);
            }
            Ok(Some(Challenge {
                model_id: row.get::<i64>(1)?.unwrap_or_default(),
                shadow: row.get::<String>(2)?.as_deref() == Some("shadow"),
                traffic: row.get::<f64>(3)?.unwrap_or(0.0),
            }))
        })
    })
}

pub struct ChallengeEvent<'a> {
    pub project_id: i64,
    pub model_id: i64,
    pub mode: &'a str,
    pub traffic: Option<f64>,
    pub event: &'a str,
    pub by: &'a str,
    pub reason: Option<&'a str>,
}

pub fn log_challenge(e: ChallengeEvent<'_>) -> AmbientResult<()> {
    Spi::run_with_args(
        "INSERT INTO ambient.challenge_log (project_id, model_id, mode, traffic, event, by, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            e.project_id.into(),
            e.model_id.into(),
            e.mode.into(),
            e.traffic.into(),
            e.event.into(),
            e.by.into(),
            e.reason.into(),
        ],
    )?;
    // A shadow's predictions are for its trial; they go when it ends.
    if e.event != "started" {
        Spi::run_with_args(
            "DELETE FROM ambient.shadow_log WHERE project_id OPERATOR(pg_catalog.=) $1",
            &[e.project_id.into()],
        )?;
    }
    Ok(())
}

/// Records a shadow challenger's prediction for one row, from the attached
/// table's trigger.
pub fn log_shadow(
    project_id: i64,
    model_id: i64,
    relation: pgrx::pg_sys::Oid,
    row_key: Option<&str>,
    prediction: &str,
) -> AmbientResult<()> {
    super::execute_kept(
        "INSERT INTO ambient.shadow_log (project_id, model_id, relation, row_key, prediction)
         VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5)",
        &[
            project_id.into(),
            model_id.into(),
            relation.into(),
            row_key.into(),
            prediction.into(),
        ],
    )?;
    Ok(())
}
