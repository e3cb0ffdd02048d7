//! Policies: what `ambient.run_policy` watches (live metrics, drift,
//! changed rows) and what it does when they cross the lines the project's
//! owner set: alert, retrain, retrain and deploy if better, retrain and
//! await a person's approval, or roll back a live model that does worse
//! than the one before it on the same labelled rows. `ambient.schedule`
//! runs a policy from pg_cron, as the role that scheduled it.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::JsonB;
use serde::{Deserialize, Serialize};

use super::check_project_name;
use super::deploy::make_live;
use super::drift::{self, Recent};
use super::monitor;
use super::subtransaction::{in_subtransaction, Failure};
use super::train::{live_definition, retrain, DeployPolicy};
use crate::catalog::audit::{self, Entry};
use crate::catalog::deployments::{self, NewDeployment};
use crate::catalog::models::Definition;
use crate::catalog::operations::{self, NewPolicyRun};
use crate::catalog::projects::{self, Project};
use crate::catalog::{
    as_author, as_extension_owner, attachments, ensure_writable, models, Author, Caller,
};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::ml::drift::Thresholds;
use crate::ml::live::LiveCounts;
use crate::source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Alert,
    Retrain,
    RetrainAndDeployIfBetter,
    RetrainAndAwaitApproval,
    RollbackIfWorse,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Retrain => "retrain",
            Action::RetrainAndDeployIfBetter => "retrain_and_deploy_if_better",
            Action::RetrainAndAwaitApproval => "retrain_and_await_approval",
            Action::RollbackIfWorse => "rollback_if_worse",
        }
    }
}

/// A project's policy, every field with its default filled in when stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    #[serde(default = "Policy::default_action")]
    action: Action,
    /// Act when the live model's primary metric (F1 or R²) over its
    /// labelled rows falls below this.
    #[serde(default)]
    min_live_metric: Option<f64>,
    /// Labelled rows the live metric needs before it counts.
    #[serde(default = "Policy::default_min_labelled_rows")]
    min_labelled_rows: i64,
    /// Act when this share of the inputs drifts (the dataset's drift).
    #[serde(default = "Policy::default_max_drift")]
    max_drift: f64,
    /// Per-column drift thresholds (see `ambient.drift`).
    #[serde(default)]
    drift: DriftLimits,
    /// Act when this many labelled rows were added to the training source
    /// since the project's last training; NULL is 50 + 10 % of the rows that
    /// training read.
    #[serde(default)]
    retrain_after_changed_rows: Option<i64>,
    /// Drift and live metrics over rows within `window` of this column.
    #[serde(default)]
    time_column: Option<String>,
    #[serde(default)]
    window: Option<String>,
    /// The longest a run may take (its statement_timeout).
    #[serde(default = "Policy::default_max_seconds")]
    max_seconds: f64,
    /// Act when a feature set the live model reads has no event newer than
    /// this interval (`ambient.feature_freshness`).
    #[serde(default)]
    max_staleness: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DriftLimits {
    psi_warn: f64,
    psi_alert: f64,
    ks_p_value: f64,
    js: f64,
}

impl Default for DriftLimits {
    fn default() -> Self {
        let t = Thresholds::default();
        DriftLimits {
            psi_warn: t.psi_warn,
            psi_alert: t.psi_alert,
            ks_p_value: t.ks_p_value,
            js: t.js,
        }
    }
}

impl Policy {
    fn default_action() -> Action {
        Action::Alert
    }
    fn default_min_labelled_rows() -> i64 {
        30
    }
    fn default_max_drift() -> f64 {
        Thresholds::default().share
    }
    fn default_max_seconds() -> f64 {
        600.0
    }

    fn parse(given: &serde_json::Value) -> AmbientResult<Policy> {
        let policy = Policy::parse_fields(given)?;
        if let Some(staleness) = &policy.max_staleness {
            Spi::get_one_with_args::<Interval>(
                "SELECT $1::pg_catalog.interval",
                &[staleness.as_str().into()],
            )?;
        }
        if let Some(window) = &policy.window {
            // Postgres says whether it is an interval (22007 if not).
            Spi::get_one_with_args::<Interval>(
                "SELECT $1::pg_catalog.interval",
                &[window.as_str().into()],
            )?;
        }
        Ok(policy)
    }

    /// The policy's fields and every check but the intervals' (which
    /// Postgres parses): pure, so property tests run it.
    fn parse_fields(given: &serde_json::Value) -> AmbientResult<Policy> {
        let policy: Policy = serde_json::from_value(given.clone()).map_err(|e| {
            AmbientError::invalid(format!("invalid policy: {e}")).hint(
                "keys: action, min_live_metric, min_labelled_rows, max_drift, drift, retrain_after_changed_rows, time_column, window, max_seconds, max_staleness",
            )
        })?;
        let bad = |what: &str| Err(AmbientError::invalid(format!("invalid policy: {what}")));
        if !(policy.max_seconds > 0.0 && policy.max_seconds <= 86_400.0) {
            return bad("max_seconds must be above 0 and at most 86400");
        }
        if !(policy.max_drift > 0.0 && policy.max_drift <= 1.0) {
            return bad("max_drift is a share of the inputs, above 0 and at most 1");
        }
        if policy.min_live_metric.is_some_and(|m| !m.is_finite()) {
            return bad("min_live_metric must be a finite number");
        }
        if policy.min_labelled_rows < 1 || policy.retrain_after_changed_rows.is_some_and(|n| n < 1)
        {
            return bad("row counts must be at least 1");
        }
        let d = &policy.drift;
        if ![d.psi_warn, d.psi_alert, d.js, d.ks_p_value]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
            || d.psi_warn > d.psi_alert
        {
            return bad("drift thresholds are non-negative, psi_warn at most psi_alert");
        }
        if policy.time_column.is_some() != policy.window.is_some() {
            return bad("time_column and window go together");
        }
        Ok(policy)
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            psi_warn: self.drift.psi_warn,
            psi_alert: self.drift.psi_alert,
            ks_p_value: self.drift.ks_p_value,
            js: self.drift.js,
            share: self.max_drift,
        }
    }

    fn window(&self) -> AmbientResult<Option<Interval>> {
        match &self.window {
            Some(w) => Ok(Spi::get_one_with_args::<Interval>(
                "SELECT $1::pg_catalog.interval",
                &[w.as_str().into()],
            )?),
            None => Ok(None),
        }
    }
}

fn owned_project(project: &str) -> AmbientResult<(Project, Caller)> {
    check_project_name(project)?;
    ensure_writable()?;
    let caller = Caller::current();
    let found = projects::require(project)?;
    projects::authorize_change(&found, &caller)?;
    Ok((found, caller))
}

/// Sets what `run_policy` watches and does for `project`; returns the
/// policy with every default filled in.
#[pg_extern(volatile, parallel_unsafe)]
fn set_policy(project: &str, policy: JsonB) -> JsonB {
    JsonB(store(project, &policy.0).or_raise())
}

fn store(project: &str, given: &serde_json::Value) -> AmbientResult<serde_json::Value> {
    let (_, caller) = owned_project(project)?;
    let policy = Policy::parse(given)?;
    let stored = serde_json::to_value(&policy).map_err(|e| AmbientError::invalid(e.to_string()))?;
    as_extension_owner(|| {
        let locked = projects::lock_for_change(project, &caller)?;
        operations::store_policy(locked.id, stored.clone(), &caller.name())?;
        audit::record(
            Entry::project(
                "set policy",
                &caller.name(),
                &locked.name,
                locked.id,
                locked.owner,
            )
            .details(stored.clone()),
        )
    })?;
    Ok(stored)
}

/// Monitors, measures drift, decides and acts, under the project's policy
/// and within its `max_seconds`; every run leaves a row in
/// `ambient.policy_runs`, one that failed too.
#[pg_extern(volatile, parallel_unsafe)]
fn run_policy(
    project: &str,
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(action, Option<String>),
        name!(reason, String),
        name!(model_id, Option<i64>),
    ),
> {
    let done = run(project).or_raise();
    TableIterator::once((
        done.status.to_string(),
        done.action.map(str::to_string),
        done.reason,
        done.model_id,
    ))
}

/// What a run did.
struct Done {
    status: &'static str,
    action: Option<&'static str>,
    reason: String,
    model_id: Option<i64>,
    details: serde_json::Value,
}

fn run(project: &str) -> AmbientResult<Done> {
    let (found, caller) = owned_project(project)?;
    let stored = as_extension_owner(|| operations::policy_of(found.id))?.ok_or_else(|| {
        AmbientError::not_in_state(format!("project \"{project}\" has no policy"))
            .hint(r#"set one: ambient.set_policy(project, '{"action": "alert", "min_live_metric": 0.8}')"#)
    })?;
    let policy = Policy::parse(&stored)?;
    // SAFETY: reads the backend's clock.
    let started: TimestampWithTimeZone = unsafe { pg_sys::GetCurrentTimestamp() }
        .try_into()
        .map_err(|_| AmbientError::invalid("the clock gave no valid timestamp"))?;
    let timer = StatementTimer::arm(policy.max_seconds);
    let outcome = in_subtransaction(|| decide_and_act(&found, &caller, &policy));
    let timed_out = timer.fired();
    let stopped_by = timer.limit(policy.max_seconds);
    timer.restore();
    if timed_out {
        // Our deadline passed: a cancel it raised that the work did not
        // meet (it finished, or failed for another reason first) is ours,
        // and must not stop the recording below.
        // SAFETY: a backend flag, read by CHECK_FOR_INTERRUPTS.
        unsafe { pg_sys::QueryCancelPending = 0 };
    }
    let done = match outcome {
        Ok(done) => done,
        Err(Failure::Ambient(e)) => failed(e.message().to_string()),
        Err(Failure::Postgres(caught)) => match *caught {
            pgrx::pg_sys::panic::CaughtError::PostgresError(report)
            | pgrx::pg_sys::panic::CaughtError::ErrorReport(report)
                if report.sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED =>
            {
                if !timed_out {
                    // A cancel that is not a time limit is the user's: it
                    // stops the statement, as any cancel does.
                    pgrx::pg_sys::panic::CaughtError::PostgresError(report).rethrow()
                }
                failed(stopped_by)
            }
            pgrx::pg_sys::panic::CaughtError::PostgresError(report)
            | pgrx::pg_sys::panic::CaughtError::ErrorReport(report) => {
                failed(report.message().to_string())
            }
            // A bug of ours is recorded too, as a failed run.
            pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => {
                failed(format!("internal error: {}", ereport.message()))
            }
        },
    };
    as_extension_owner(|| {
        operations::insert_policy_run(NewPolicyRun {
            project_id: found.id,
            started_at: started,
            run_by: &caller.name(),
            status: done.status,
            action: done.action,
            reason: &done.reason,
            model_id: done.model_id,
            details: done.details.clone(),
        })?;
        // A run that found nothing to do changed nothing: policy_runs
        // keeps it, the audit trail does not.
        if done.status == "nothing to do" {
            return Ok(());
        }
        let run_by = caller.name();
        let mut entry = Entry::project("run policy", &run_by, &found.name, found.id, found.owner)
            .reason(Some(&done.reason))
            .details(serde_json::json!({
                "status": done.status,
                "action": done.action,
            }));
        entry.model_id = done.model_id;
        audit::record(entry)
    })?;
    Ok(done)
}

fn failed(reason: String) -> Done {
    Done {
        status: "failed",
        action: None,
        reason,
        model_id: None,
        details: serde_json::json!({}),
    }
}

/// Postgres's statement timer (timeout.h), set to end a policy run after
/// its `max_seconds`, unless the statement's own timeout ends it sooner.
/// pgrx does not bind timeout.h; `STATEMENT_TIMEOUT` is the fourth
/// `TimeoutId` in every Postgres this extension builds for.
mod timeout {
    use pgrx::pg_sys::TimestampTz;
    pub const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
    extern "C-unwind" {
        pub fn enable_timeout_at(id: std::ffi::c_int, fin_time: TimestampTz);
        pub fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
        pub fn get_timeout_active(id: std::ffi::c_int) -> bool;
        pub fn get_timeout_finish_time(id: std::ffi::c_int) -> TimestampTz;
    }
}

/// Stops a policy run in time to record it: after its `max_seconds`, or
/// just before the statement's own `statement_timeout` when that comes
/// first (which would otherwise end the statement with nothing recorded).
struct StatementTimer {
    /// The statement's own deadline, to put back; `None` if it had none.
    previous: Option<pg_sys::TimestampTz>,
    /// Ours, when we set one.
    armed: Option<pg_sys::TimestampTz>,
    /// Whether ours was brought forward to the statement's.
    before_statement_timeout: bool,
}

impl StatementTimer {
    fn arm(seconds: f64) -> Self {
        // SAFETY: timeout.h's functions, on this backend's timers.
        unsafe {
            let id = timeout::STATEMENT_TIMEOUT;
            let previous =
                timeout::get_timeout_active(id).then(|| timeout::get_timeout_finish_time(id));
            let now = pg_sys::GetCurrentTimestamp();
            let ours = now + (seconds * 1e6) as i64;
            // Time to write the run's row before the statement's deadline:
            // a tenth of what is left, at most a second.
            let early = previous.map(|p| p - ((p - now) / 10).min(1_000_000));
            let (armed, before_statement_timeout) = match early {
                Some(early) if early < ours => (Some(early).filter(|&e| e > now), true),
                _ => (Some(ours), false),
            };
            if let Some(at) = armed {
                timeout::enable_timeout_at(id, at);
            }
            StatementTimer {
                previous,
                armed,
                before_statement_timeout,
            }
        }
    }

    /// Whether our deadline has passed, so a cancel was ours. (The timer's
    /// own indicator is reset by the interrupt that raised the error.)
    fn fired(&self) -> bool {
        // SAFETY: reads the backend's clock.
        self.armed
            .is_some_and(|at| unsafe { pg_sys::GetCurrentTimestamp() } >= at)
    }

    /// Why a run our deadline stopped was stopped.
    fn limit(&self, max_seconds: f64) -> String {
        if self.before_statement_timeout {
            "stopped before the statement's statement_timeout, which is shorter than max_seconds"
                .to_string()
        } else {
            format!("stopped after max_seconds ({max_seconds} s)")
        }
    }

    fn restore(self) {
        if self.armed.is_none() {
            return;
        }
        // SAFETY: puts the statement's own timer back as it was.
        unsafe {
            match self.previous {
                Some(at) => timeout::enable_timeout_at(timeout::STATEMENT_TIMEOUT, at),
                None => timeout::disable_timeout(timeout::STATEMENT_TIMEOUT, false),
            }
        }
    }
}

fn decide_and_act(project: &Project, caller: &Caller, policy: &Policy) -> AmbientResult<Done> {
    let live = as_extension_owner(|| deployments::live(project.id))?.ok_or_else(|| {
        AmbientError::not_in_state(format!(
            "project \"{}\" has no deployed model",
            project.name
        ))
    })?;
    let primary = project.task.primary_metric();
    let window = policy.window()?;
    let mut reasons: Vec<String> = Vec::new();
    let mut details = serde_json::Map::new();

    // 1. Live metrics, over the labels that arrived.
    let runs = monitor::run(&project.name, policy.time_column.as_deref(), window)?;
    if let Some((_, _, rows, metrics)) = runs.iter().find(|r| r.0 == live.model_id) {
        details.insert("live_metrics".into(), metrics.clone());
        details.insert("labelled_rows".into(), (*rows).into());
        let metric = metrics.get(primary).and_then(serde_json::Value::as_f64);
        if let (Some(min), Some(metric)) = (policy.min_live_metric, metric) {
            if *rows >= policy.min_labelled_rows && metric < min {
                reasons.push(format!(
                    "live {primary} {metric:.4} over {rows} labelled rows is below min_live_metric {min}"
                ));
            }
        }
    }

    // 2. Drift of the attached tables' recent rows.
    if !attachments::of_project(project.id)?.is_empty() {
        let thresholds = policy.thresholds();
        let report = drift::measure_with(
            project,
            caller,
            &Recent::Attached,
            policy.time_column.as_deref(),
            window,
            thresholds,
        )?;
        drift::record(
            project,
            caller,
            &report,
            "the attached tables, for run_policy",
        )?;
        details.insert("drifted_share".into(), report.share.into());
        if report.rows > 0 && report.share >= policy.max_drift {
            let drifted: Vec<&str> = report
                .columns
                .iter()
                .filter(|c| c.2.status == crate::ml::drift::Status::Drift && c.0 != "(prediction)")
                .map(|c| c.0.as_str())
                .collect();
            reasons.push(format!(
                "{:.0} % of the inputs drifted ({}), max_drift is {:.0} %",
                report.share * 100.0,
                drifted.join(", "),
                policy.max_drift * 100.0
            ));
        }
    }

    // 3. Labelled rows added to the live model's training source since it
    // was trained (a model from before 0.2.0 has no definition to count).
    let definition = live_definition(project, live.model_id);
    let counted = match &definition {
        Ok(definition) => changed_rows(project, policy, definition)?,
        Err(_) => None,
    };
    if let Some((changed, threshold)) = counted {
        details.insert("changed_rows".into(), changed.into());
        if changed >= threshold {
            reasons.push(format!(
                "{changed} labelled rows were added since the live model was trained (retrain_after_changed_rows {threshold})"
            ));
        }
    }

    // 4. Feature sets the live model reads that stopped receiving events.
    if let Some(limit) = &policy.max_staleness {
        let stale = super::features::stale_sets(live.model_id, limit)?;
        if !stale.is_empty() {
            details.insert("stale_feature_sets".into(), serde_json::json!(stale));
            reasons.push(format!(
                "feature set(s) {} have no event newer than max_staleness {limit}",
                stale
                    .iter()
                    .map(|(set, newest)| format!(
                        "{set} (newest {})",
                        newest.as_deref().unwrap_or("none")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    if policy.action == Action::RollbackIfWorse {
        if let Some((live_score, previous_score, rows, previous_id)) =
            compare_with_previous(project, live.model_id)?
        {
            details.insert(
                "comparison".into(),
                serde_json::json!({"rows": rows, "live": live_score, "previous": previous_score, "previous_model_id": previous_id}),
            );
            if rows >= policy.min_labelled_rows && live_score < previous_score {
                let reason = format!(
                    "the live model's {primary} {live_score:.4} is below the previous model's {previous_score:.4} on the same {rows} labelled rows"
                );
                as_extension_owner(|| {
                    let locked = projects::lock_for_change(&project.name, caller)?;
                    let current = deployments::live(locked.id)?
                        .ok_or_else(|| AmbientError::not_in_state("no live model"))?;
                    // Another session deployed meanwhile: the comparison was
                    // of other models.
                    if current.id != live.id {
                        return Err(AmbientError::not_in_state(format!(
                            "project \"{}\" deployed another model while the policy compared",
                            locked.name
                        )));
                    }
                    let earlier = deployments::get(
                        current
                            .parent_id
                            .ok_or_else(|| AmbientError::not_in_state("no earlier deployment"))?,
                    )?;
                    make_live(
                        &locked,
                        NewDeployment {
                            project_id: locked.id,
                            model_id: earlier.model_id,
                            previous_model_id: Some(current.model_id),
                            parent_id: earlier.parent_id,
                            strategy: "rollback",
                            reason: Some(&format!("run_policy: {reason}")),
                            deployed_by: &caller.name(),
                        },
                        false,
                    )?;
                    operations::raise_alert(
                        locked.id,
                        &locked.name,
                        "rollback",
                        &reason,
                        serde_json::Value::Object(details.clone()),
                    )
                })?;
                return Ok(Done {
                    status: "acted",
                    action: Some(Action::RollbackIfWorse.as_str()),
                    reason,
                    model_id: Some(previous_id),
                    details: serde_json::Value::Object(details),
                });
            }
        }
    }
    if reasons.is_empty() {
        return Ok(Done {
            status: "nothing to do",
            action: None,
            reason: "every watched measure is within the policy".into(),
            model_id: None,
            details: serde_json::Value::Object(details),
        });
    }
    let reason = reasons.join("; ");
    as_extension_owner(|| {
        operations::raise_alert(
            project.id,
            &project.name,
            "policy",
            &reason,
            serde_json::Value::Object(details.clone()),
        )
    })?;
    let deploy = match policy.action {
        Action::Alert | Action::RollbackIfWorse => None,
        Action::Retrain | Action::RetrainAndAwaitApproval => Some(DeployPolicy::Never),
        Action::RetrainAndDeployIfBetter => Some(DeployPolicy::IfBetter),
    };
    let mut model_id = None;
    let mut reason = reason;
    if let Some(deploy) = deploy {
        let retrained = retrain(project, &definition?, deploy)?;
        details.insert("new_model_version".into(), retrained.version.into());
        details.insert("deployed".into(), retrained.deployed.into());
        if deploy == DeployPolicy::IfBetter && !retrained.deployed {
            reason.push_str(&format!(
                "; retrained version {} was not deployed: it did not beat the live model on the same rows",
                retrained.version
            ));
        }
        if policy.action == Action::RetrainAndAwaitApproval {
            as_extension_owner(|| operations::await_approval(retrained.model_id, project.id))?;
        }
        model_id = Some(retrained.model_id);
    }
    // rollback_if_worse acts only on its comparison; what else it sees it
    // reports as an alert.
    let action = match policy.action {
        Action::RollbackIfWorse => Action::Alert,
        other => other,
    };
    Ok(Done {
        status: "acted",
        action: Some(action.as_str()),
        reason,
        model_id,
        details: serde_json::Value::Object(details),
    })
}

/// Labelled rows in the live model's training source now, less those its
/// training read, and the threshold. The source is counted as the
/// definition's author, as a retrain would read it. `None` when the source
/// is gone.
fn changed_rows(
    project: &Project,
    policy: &Policy,
    definition: &Definition,
) -> AmbientResult<Option<(i64, i64)>> {
    let target = quote_identifier(&project.target);
    let now = as_author(&definition.author, || {
        let Some(source) = source::Source::stored(&definition.source_kind, &definition.source)?
        else {
            return Ok(None);
        };
        source.read(|| {
            Ok(Spi::get_one::<i64>(&format!(
                "SELECT pg_catalog.count(*) FROM {} WHERE {target} IS NOT NULL",
                source.sql_from(),
            ))?)
        })
    })?;
    let Some(now) = now else {
        return Ok(None);
    };
    let threshold = policy
        .retrain_after_changed_rows
        .unwrap_or(50 + definition.rows / 10);
    Ok(Some(((now - definition.rows).max(0), threshold)))
}

/// The live and the previous model's primary metric on the same labelled
/// rows of the attached tables (those the live model predicted), with the
/// row count and the previous model's id; `None` without an earlier
/// deployment or labelled rows.
fn compare_with_previous(
    project: &Project,
    live_model: i64,
) -> AmbientResult<Option<(f64, f64, i64, i64)>> {
    let Some(live) = as_extension_owner(|| deployments::live(project.id))? else {
        return Ok(None);
    };
    let Some(parent) = live.parent_id else {
        return Ok(None);
    };
    let previous_id = as_extension_owner(|| deployments::get(parent))?.model_id;
    let (counts, rows) =
        monitor::score_labelled_rows(project, &[live_model, previous_id], &[live_model])?;
    if rows == 0 {
        return Ok(None);
    }
    let primary = project.task.primary_metric();
    let score = |c: &LiveCounts| c.metrics().get(primary).copied().unwrap_or(f64::NAN);
    Ok(Some((
        score(&counts[0]),
        score(&counts[1]),
        rows,
        previous_id,
    )))
}

/// Deploys a model that a policy retrained and that awaits approval.
#[pg_extern(volatile, parallel_unsafe)]
fn approve(model_id: i64, reason: default!(Option<&str>, "NULL")) -> i64 {
    decide(model_id, "approved", reason).or_raise()
}

/// Sets aside a model that awaits approval; it is kept, never deployed by
/// the policy.
#[pg_extern(volatile, parallel_unsafe)]
fn reject(model_id: i64, reason: default!(Option<&str>, "NULL")) -> i64 {
    decide(model_id, "rejected", reason).or_raise()
}

fn decide(model_id: i64, state: &str, reason: Option<&str>) -> AmbientResult<i64> {
    ensure_writable()?;
    let caller = Caller::current();
    as_extension_owner(|| {
        let owner = models::owner_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
        // Refused in terms of the model the caller named, not its project's
        // name, which a stranger may not learn.
        if !caller.acts_as(owner.owner) {
            return Err(AmbientError::privilege(format!("permission denied for model {model_id}"))
                .hint("only roles with the privileges of its project's owner may approve or reject it"));
        }
        let name = projects::name_of(owner.project_id)?;
        let project = projects::lock_for_change(&name, &caller)?;
        match operations::approval_of(model_id)? {
            Some((current, _)) if current == "awaiting" => {}
            found => {
                return Err(AmbientError::not_in_state(format!(
                    "model {model_id} is not awaiting approval{}",
                    found.map_or(String::new(), |(s, _)| format!(" (it was {s})"))
                ))
                .hint(
                    "SELECT * FROM ambient.approvals WHERE state = 'awaiting' lists those that are",
                ))
            }
        }
        let by = caller.name();
        operations::decide_approval(model_id, state, &by, reason)?;
        audit::record(
            Entry::project(
                if state == "approved" {
                    "approve"
                } else {
                    "reject"
                },
                &by,
                &project.name,
                project.id,
                project.owner,
            )
            .model(model_id)
            .reason(reason),
        )?;
        if state == "approved" {
            let live = deployments::live(project.id)?;
            let note = format!(
                "approved by {by}{}",
                reason.map_or(String::new(), |r| format!(": {r}"))
            );
            make_live(
                &project,
                NewDeployment::on_top_of(live, project.id, model_id, "manual", Some(&note), &by),
                false,
            )?;
        }
        Ok(model_id)
    })
}

/// Runs the project's policy from pg_cron on `cron` (pg_cron's syntax), in
/// this database, as the project's owner: one job per project, whichever
/// of its owners schedules it (scheduling again replaces the job).
#[pg_extern(volatile, parallel_unsafe)]
fn schedule(project: &str, cron: &str) -> i64 {
    schedule_policy(project, cron).or_raise()
}

fn pg_cron_installed() -> AmbientResult<bool> {
    Ok(Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_cron')",
    )?
    .unwrap_or(false))
}

fn pg_cron_here() -> AmbientResult<()> {
    if !pg_cron_installed()? {
        return Err(AmbientError::not_in_state("pg_cron is not installed in this database").hint(
            "add pg_cron to shared_preload_libraries, set cron.database_name to this database, then CREATE EXTENSION pg_cron; or call ambient.run_policy from your own scheduler",
        ));
    }
    Ok(())
}

fn schedule_policy(project: &str, cron: &str) -> AmbientResult<i64> {
    let (found, caller) = owned_project(project)?;
    pg_cron_here()?;
    if as_extension_owner(|| operations::policy_of(found.id))?.is_none() {
        return Err(AmbientError::not_in_state(format!(
            "project \"{project}\" has no policy to schedule"
        ))
        .hint("set one first with ambient.set_policy"));
    }
    let command = format!(
        "SELECT * FROM ambient.run_policy({})",
        quote_literal(project)
    );
    let job_name = job_name(project);
    as_extension_owner(|| {
        // The lock queues co-owners scheduling at once.
        let locked = projects::lock_for_change(project, &caller)?;
        if let Some(previous) = operations::schedule_of(locked.id)? {
            unschedule_job(previous, project)?;
        }
        // pg_cron connects as the job's role (unless it runs jobs in
        // background workers): a role that cannot log in never runs it.
        let can_log_in = Spi::get_one_with_args::<bool>(
            "SELECT rolcanlogin OR pg_catalog.current_setting('cron.use_background_workers', true)
                                     OPERATOR(pg_catalog.=) 'on'
               FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1",
            &[locked.owner.into()],
        )?
        .unwrap_or(false);
        if !can_log_in {
            return Err(AmbientError::not_in_state(format!(
                "project \"{project}\" belongs to a role that cannot log in, and pg_cron connects as the job's role"
            ))
            .hint("give the project's role LOGIN, or set cron.use_background_workers = on"));
        }
        // pg_cron runs a job as the role that scheduled it, so the job is
        // scheduled as the project's owner: never as a superuser who
        // happens to call this, whose rights the job would then run with.
        let job_id = as_author(&Author::restricted(locked.owner), || {
            // pg_cron lives in one database, cron.database_name, and runs
            // its jobs there: this one.
            Ok(Spi::get_one_with_args::<i64>(
                "SELECT cron.schedule($1, $2, $3)",
                &[
                    job_name.as_str().into(),
                    cron.into(),
                    command.as_str().into(),
                ],
            )?)
        })?
        .unwrap_or_default();
        operations::store_schedule(locked.id, job_id, cron, &caller.name())?;
        audit::record(
            Entry::project(
                "schedule",
                &caller.name(),
                &locked.name,
                locked.id,
                locked.owner,
            )
            .details(serde_json::json!({ "cron": cron, "job_id": job_id })),
        )?;
        Ok(job_id)
    })
}

/// Removes a pg_cron job this extension scheduled, if it is still there,
/// whoever it runs as. Call inside `as_extension_owner` (pg_cron lets its
/// superuser remove any job), after checking the caller owns the project.
/// The job must still be the project's (its name): job ids start over if
/// pg_cron is made again, and another role's job must not go.
fn unschedule_job(job_id: i64, project: &str) -> AmbientResult<()> {
    Spi::run_with_args(
        "SELECT cron.unschedule(jobid) FROM cron.job
          WHERE jobid OPERATOR(pg_catalog.=) $1 AND jobname OPERATOR(pg_catalog.=) $2",
        &[job_id.into(), job_name(project).as_str().into()],
    )?;
    Ok(())
}

/// The name of a project's pg_cron job.
fn job_name(project: &str) -> String {
    format!("ambient policy {project}")
}

/// Stops running the project's policy from pg_cron; any role that acts as
/// the project's owner may.
#[pg_extern(volatile, parallel_unsafe)]
fn unschedule(project: &str) {
    unschedule_policy(project).or_raise()
}

fn unschedule_policy(project: &str) -> AmbientResult<()> {
    let (_, caller) = owned_project(project)?;
    pg_cron_here()?;
    as_extension_owner(|| {
        let locked = projects::lock_for_change(project, &caller)?;
        let job_id = operations::schedule_of(locked.id)?.ok_or_else(|| {
            AmbientError::undefined_object(format!("project \"{project}\" is not scheduled"))
        })?;
        unschedule_job(job_id, project)?;
        operations::delete_schedule(locked.id)?;
        audit::record(
            Entry::project(
                "unschedule",
                &caller.name(),
                &locked.name,
                locked.id,
                locked.owner,
            )
            .details(serde_json::json!({ "job_id": job_id })),
        )
    })
}

/// Unschedules a project that is being dropped. Call inside
/// `as_extension_owner`, holding the project lock.
pub(super) fn unschedule_dropped(project_id: i64, project: &str) -> AmbientResult<()> {
    if let Some(job_id) = operations::schedule_of(project_id)? {
        if pg_cron_installed()? {
            unschedule_job(job_id, project)?;
        }
        operations::delete_schedule(project_id)?;
    }
    Ok(())
}

/// The pg_cron job behind a readable project's schedule, as pg_cron has
/// it: its id, schedule, the role it runs as and whether it is active. No
/// row when the project is not scheduled, not readable, or pg_cron is gone.
#[pg_extern(stable, parallel_restricted)]
fn scheduled_job(
    project: &str,
) -> TableIterator<
    'static,
    (
        name!(job_id, i64),
        name!(schedule, String),
        name!(run_as, String),
        name!(active, bool),
    ),
> {
    TableIterator::new(find_job(project).or_raise())
}

fn find_job(project: &str) -> AmbientResult<Option<(i64, String, String, bool)>> {
    let caller = Caller::current();
    let Some(found) = projects::find(project)? else {
        return Ok(None);
    };
    if !projects::may_read(&found, &caller)? || !pg_cron_installed()? {
        return Ok(None);
    }
    let Some(job_id) = operations::schedule_of(found.id)? else {
        return Ok(None);
    };
    Ok(operations::cron_job(job_id)?
        .map(|(schedule, run_as, active)| (job_id, schedule, run_as, active)))
}

extension_sql!(
    r#"
-- A readable project's policy and the pg_cron job that runs it, as pg_cron
-- has the job (NULLs when it has none).
CREATE VIEW ambient.project_policies WITH (security_barrier) AS
SELECT p.project, pol.policy, j.schedule, j.job_id, j.run_as, j.active, pol.set_at, pol.set_by
  FROM ambient.policies pol
  JOIN ambient.readable_projects p ON p.project_id = pol.project_id
  LEFT JOIN LATERAL ambient.scheduled_job(p.project) j ON true;
GRANT SELECT ON ambient.project_policies TO PUBLIC;
"#,
    name = "project_policies",
    requires = [scheduled_job]
);

#[cfg(test)]
mod tests {
    use super::Policy;
    use crate::ml::fuzz::{json, runner};

    #[test]
    fn arbitrary_policies_are_refused_or_accepted_never_a_panic() {
        const KEYS: &[&str] = &[
            "action",
            "min_live_metric",
            "min_labelled_rows",
            "max_drift",
            "drift",
            "psi_warn",
            "psi_alert",
            "ks_p_value",
            "js",
            "retrain_after_changed_rows",
            "time_column",
            "window",
            "max_seconds",
            "max_staleness",
            "alert",
            "retrain",
            "rollback_if_worse",
        ];
        runner()
            .run(&json(KEYS), |given| {
                if let Ok(policy) = Policy::parse_fields(&given) {
                    // What is accepted is within its documented bounds.
                    proptest::prop_assert!(
                        policy.max_seconds > 0.0 && policy.max_seconds <= 86_400.0
                    );
                    proptest::prop_assert!(policy.min_labelled_rows >= 1);
                    let _ = policy.thresholds();
                }
                Ok(())
            })
            .unwrap();
        // And the documented example is accepted.
        assert!(Policy::parse_fields(
            &serde_json::json!({"action": "alert", "min_live_metric": 0.8})
        )
        .is_ok());
    }
}
